"""The simulator's settings, declared once: ``SETTINGS`` feeds the dataclass defaults, argparse and docs.

``SimConfig.validate()`` raises ``ConfigError`` with a one-line message naming the flag.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from ollama_locust.simulator.profiles import (DEFAULT_PROFILE, PROFILES, Profile, ProfileFileError, load_profile_file,
                                              with_overrides)


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line for the CLI."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    type: type
    help: str
    check: str = ""  # "port", "rate", "pos", "nonneg", "int>=1", "int>=0", "duration", "profile", "models",
    # "engine"; cross-setting checks (the engine and its model file) are in SimConfig.validate()
    metavar: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", str, "address to bind"),
    Setting("port", 11434, int, "port to bind; 0 lets the OS pick a free one", "port"),
    Setting("profile", DEFAULT_PROFILE, str, f"timing profile: {', '.join(PROFILES)}", "profile"),
    Setting("profile_file", None, str, "serve the server fitted by 'ollama-locust probe' (its probe.json) instead of "
            "--profile; its slot count is the default of --num-parallel", metavar="PROBE.json"),
    Setting("num_parallel", 1, int, "slots per loaded model (OLLAMA_NUM_PARALLEL)", "int>=1"),
    Setting("max_queue", 512, int, "scheduler queue capacity (OLLAMA_MAX_QUEUE); full -> 503", "int>=0"),
    Setting("keep_alive", "5m", str, "default keep-alive: seconds or a Go duration ('5m'); negative = forever",
            "duration"),
    Setting("models", None, str, "comma-separated model names served (':latest' optional); default llama3.2:latest, "
            "with --engine llama-cpp the model file's name without .gguf", "models"),
    Setting("seed", 0, int, "seed of replies, reply lengths and faults (with --engine llama-cpp: the sampling "
            "seed of requests that set none)"),
    Setting("prefill_tps", None, float, "override the profile's prompt evaluation rate (tokens/s)", "pos"),
    Setting("decode_tps", None, float, "override the profile's single-stream decode rate (tokens/s)", "pos"),
    Setting("load_time", None, float, "override the profile's model load time (seconds)", "nonneg"),
    Setting("beta", None, float, "override the profile's batch slowdown per extra busy slot", "nonneg"),
    Setting("strict_queue", False, bool, "MAX_QUEUE bounds every waiting request, warm model too (not Ollama's"
            " behaviour; what the setting's name suggests)"),
    Setting("truth_log", None, str, "write one JSON line per request (ground truth) to FILE", metavar="FILE"),
    Setting("fail_rate", 0.0, float, "share of requests answered HTTP 500 before streaming", "rate"),
    Setting("drop_rate", 0.0, float, "share of requests whose connection is closed mid-stream", "rate"),
    Setting("stall", 0.0, float, "pause a stream mid-way for SECONDS (see --stall-rate)", "nonneg", "SECONDS"),
    Setting("stall_rate", None, float, "share of requests stalled by --stall (default 1 when --stall is set)",
            "rate"),
    Setting("garbage_rate", 0.0, float, "share of streams that get a malformed line mid-stream", "rate"),
    Setting("error_line_rate", 0.0, float, "share of streams that end with Ollama's {\"error\":...} line", "rate"),
    Setting("version_string", "0.33.0", str, "version reported by /api/version"),
    Setting("engine", "sim", str, "what makes the tokens: sim (the profile's timing model) or llama-cpp (real "
            "inference with llama.cpp on --model-file; it runs one request at a time, so NUM_PARALLEL slots "
            "wait for the one engine)", "engine"),
    Setting("model_file", None, str, "GGUF model file for --engine llama-cpp", metavar="PATH"),
    Setting("stop_on_stdin_eof", False, bool, "stop by itself once standard input closes and no connection has "
            "been open for 1 s (for launchers: when the process holding the pipe dies, nothing is left running)"),
)

ENGINES = ("sim", "llama-cpp")
DEFAULT_MODEL = "llama3.2:latest"
# Timing-model overrides that mean nothing when a real engine makes the tokens.
_TIMING_OVERRIDES = ("prefill_tps", "decode_tps", "load_time", "beta")

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string ('5m', '1h30m', '-1s', '0'); ValueError as Go words it."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_RE.match(body, pos)
        if not m:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def parse_keep_alive(value: Any) -> float:
    """Seconds from a keep_alive value (number = seconds, string = Go duration or a number);
    negative means forever (returned as inf). Raises TypeError for other types, ValueError for bad text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(_go_type_name(value))
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = parse_go_duration(value)
    else:
        seconds = float(value)
    return math.inf if seconds < 0 else seconds


def _go_type_name(value: Any) -> str:
    return {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}.get(type(value), "<nil>")


class _SimConfigMethods:
    """Methods of SimConfig; its fields come from SETTINGS (below), so each default is written once."""

    def validate(self) -> "SimConfig":
        for s in SETTINGS:
            _check(s, getattr(self, s.name))
        if self.stall_rate and not self.stall:
            raise ConfigError("--stall-rate needs --stall SECONDS (how long to pause)")
        if self.engine == "llama-cpp":
            if not self.model_file:
                raise ConfigError("--engine llama-cpp needs --model-file PATH (a GGUF model file)")
            for name in _TIMING_OVERRIDES:
                if getattr(self, name) is not None:
                    raise ConfigError(f"{flag(name)} has no effect with --engine llama-cpp: the engine's own "
                                      "speed is what is measured")
            if self.models is not None and len(self.model_names()) != 1:
                raise ConfigError("--engine llama-cpp serves its one model file under one name; "
                                  f"--models got {len(self.model_names())}")
            _check_model_file(self.model_file)  # that llama.cpp can load it is checked at start-up
        elif self.model_file:
            raise ConfigError("--model-file needs --engine llama-cpp (the simulator's own engine uses no model file)")
        if self.profile_file:
            try:
                load_profile_file(self.profile_file)
            except ProfileFileError as error:
                raise ConfigError(f"--profile-file {error}") from None
        return self

    # Derived values -----------------------------------------------------------------------------
    def timing(self) -> Profile:
        base = load_profile_file(self.profile_file)[0] if self.profile_file else PROFILES[self.profile]
        return with_overrides(base, decode_tps=self.decode_tps, prefill_tps=self.prefill_tps,
                              beta=self.beta, load_time=self.load_time)

    def model_names(self) -> list[str]:
        if self.models is None:
            if self.engine == "llama-cpp" and self.model_file:
                return [normalize_model(model_file_name(self.model_file))]
            return [DEFAULT_MODEL]
        return [normalize_model(m) for m in self.models.split(",") if m.strip()]

    def keep_alive_seconds(self) -> float:
        return parse_keep_alive(self.keep_alive)

    def effective_stall_rate(self) -> float:
        if self.stall_rate is not None:
            return self.stall_rate
        return 1.0 if self.stall else 0.0


SimConfig = make_dataclass(
    "SimConfig",
    [(s.name, s.type if s.default is not None else (s.type | None), field(default=s.default)) for s in SETTINGS],
    bases=(_SimConfigMethods,), frozen=True,
)
SimConfig.__doc__ = "The simulator's settings (see SETTINGS for defaults and help). Call .validate()."
SimConfig.__module__ = __name__


def normalize_model(name: str) -> str:
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def model_file_name(path: str) -> str:
    """The name a model file is served under by default: its file name without ``.gguf``."""
    base = os.path.basename(path)
    return base[:-5] if base.lower().endswith(".gguf") and len(base) > 5 else base


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check(s: Setting, value: Any) -> None:
    f = flag(s.name)
    if value is None:
        return
    c = s.check
    if c == "rate" and not (0.0 <= value <= 1.0):
        raise ConfigError(f"{f} must be between 0 and 1, got {value:g}")
    if c == "pos" and not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{f} must be a positive number, got {value:g}")
    if c == "nonneg" and not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{f} must be zero or positive, got {value:g}")
    if c == "port" and not (0 <= value <= 65535):
        raise ConfigError(f"{f} must be between 0 and 65535, got {value}")
    if c == "int>=1" and value < 1:
        raise ConfigError(f"{f} must be at least 1, got {value}")
    if c == "int>=0" and value < 0:
        raise ConfigError(f"{f} must be zero or more, got {value}")
    if c == "profile" and value not in PROFILES:
        raise ConfigError(f"{f}: unknown profile '{value}'; available: {', '.join(PROFILES)}")
    if c == "models" and not [m for m in str(value).split(",") if m.strip()]:
        raise ConfigError(f"{f} needs at least one model name")
    if c == "engine" and value not in ENGINES:
        raise ConfigError(f"{f}: unknown engine '{value}'; available: {', '.join(ENGINES)}")
    if c == "duration":
        try:
            parse_keep_alive(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{f} must be seconds or a duration like 5m, 30s, -1, got '{value}'") from None


def _check_model_file(path: str) -> None:
    """The file exists and starts like a GGUF file; whether llama.cpp can load it is checked at start-up."""
    f = "--model-file"
    if not os.path.exists(path):
        raise ConfigError(f"{f} {path}: no such file")
    if not os.path.isfile(path):
        raise ConfigError(f"{f} {path}: not a file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise ConfigError(f"{f} {path}: cannot read it ({e.strerror})") from None
    if magic != b"GGUF":
        raise ConfigError(f"{f} {path}: not a GGUF model file (it does not start with 'GGUF')")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"ollama-locust sim: {message}\n")


def _number(kind: type, name: str):
    def conv(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {noun}, got '{text}'") from None
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError(f"must be a number, got '{text}'")
        return value
    conv.__name__ = name
    return conv


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ollama-locust sim", description="An Ollama-compatible server that behaves like Ollama "
                "under load (slots, queue, shared decode, load time, keep-alive), for tests and dry runs. "
                "With --engine llama-cpp --model-file M the tokens come from real inference (llama.cpp via "
                "llama-cpp-python, served as M's file name): the load, prompt evaluation and generation are the "
                "engine's and measured; llama-cpp-python runs one sequence at a time, so requests are serialised "
                "on the engine whatever --num-parallel says (slots wait for it; nothing is batched).")
    for s in SETTINGS:
        default_txt = "" if s.default in (None, False) else f" (default: {s.default})"
        if s.type is bool:
            p.add_argument(flag(s.name), dest=s.name, action="store_true", default=s.default, help=s.help)
        else:
            conv = _number(s.type, s.name) if s.type in (int, float) else str
            p.add_argument(flag(s.name), dest=s.name, type=conv, default=s.default, metavar=s.metavar,
                           help=s.help + default_txt)
    return p


def config_from_args(argv: list[str]) -> SimConfig:
    """Parse and validate; SystemExit(2) from argparse, ConfigError from validation."""
    ns = build_parser().parse_args(argv)
    cfg = SimConfig(**vars(ns)).validate()
    if cfg.profile_file and not any(a == "--num-parallel" or a.startswith("--num-parallel=") for a in argv):
        from dataclasses import replace

        cfg = replace(cfg, num_parallel=load_profile_file(cfg.profile_file)[1])  # the fitted slot count
    return cfg


def settings_markdown() -> str:
    """The flag table for docs/simulator.md."""
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        d = "—" if s.default is None else ("off" if s.default is False else f"`{s.default}`")
        arg = "" if s.type is bool else " " + (s.metavar or s.name.upper())
        rows.append(f"| `{flag(s.name)}{arg}` | {d} | {s.help} |")
    return "\n".join(rows)


__all__ = ["ConfigError", "SETTINGS", "SimConfig", "build_parser", "config_from_args", "normalize_model",
           "parse_go_duration", "parse_keep_alive", "settings_markdown"]
