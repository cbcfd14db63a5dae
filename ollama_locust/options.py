"""The project's Locust options, declared once (below both the load side and the reports).

Each row becomes a Locust command-line option (registered through ``init_command_line_parser``), so it
works the same on the command line, in ``locust.conf``, as an environment variable (``LOCUST_<NAME>``)
and in the web UI's start form; the master forwards them to workers. ``ollama-locust step`` adds the
same rows to its parser without defaults (:func:`add_passthrough`) and hands on exactly what was given
(:func:`given_flags`), so ``locust.conf`` and env vars still apply; ``ollama-locust report`` takes its
threshold flags from the same rows (:func:`add_report_thresholds`).

API keys are never options: they are read from the environment variable named by ``--api-key-env``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ollama_locust import contract



class OneLineParser(argparse.ArgumentParser):
    """Every command's parser: a bad argument is one line and exit 2, no usage dump."""

    def error(self, message: str):
        self.exit(contract.EXIT_BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


@dataclass(frozen=True)
class Option:
    flag: str
    default: Any
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None
    web_ui: bool = True
    is_flag: bool = False  # a store_true switch
    label: str = ""  # the web UI form's label (short; the help is shown under the field)
    group: str = "run"  # the form's section: one of GROUPS

    @property
    def title(self) -> str:
        return self.label or self.dest.replace("_", " ").capitalize()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env_var(self) -> str:
        return "LOCUST_" + self.dest.upper()

    @property
    def shown_default(self) -> str:
        """The default as the help, the docs table and the web UI's form show it."""
        if self.is_flag:
            return "off"
        return "none" if self.default in ("", None) else str(self.default)

    @property
    def help_text(self) -> str:
        return f"{self.help} (default: {self.shown_default})"


SHAPES = ("none", "step", "burst", "ramp", "rate")
ARRIVALS = ("poisson", "constant")  # the open-loop arrival processes (scenarios/arrivals.py)
# The web UI form's sections, in order: (group, heading).
GROUPS: tuple[tuple[str, str], ...] = (
    ("target", "Target and model"),
    ("load", "Load"),
    ("thresholds", "Thresholds"),
    ("run", "Run"),
)
RECIPE_FORMATS = ("schema", "json")
# The user class that runs when none is named (web UI, `locust --headless`, `ollama-locust step`).
DEFAULT_USER_CLASS = "StudentUser"

LOAD_OPTIONS: tuple[Option, ...] = (
    Option("--model", "llama3.2", "model to ask (must be present on the target)", label="Model", group="target"),
    Option("--api", "ollama-chat", "which API the users call", choices=contract.APIS, label="API", group="target"),
    Option("--num-predict", 0, "max output tokens per request (options.num_predict / max_tokens); 0 = the server's default", int, label="Max output tokens", group="load"),
    Option("--prompts", "", "prompt set file (JSON/JSONL) replacing the built-in sets", label="Prompt set file", group="load"),
    Option("--think-time", "1,5", "seconds a user reads/thinks between requests: 'S' or 'MIN,MAX'", label="Think time (s)", group="load"),
    Option("--request-timeout", 300.0, "seconds a whole request may take before it counts as a timeout", float, label="Request timeout (s)", group="load"),
    Option("--first-token-timeout", 120.0, "seconds to the first token before a request counts as a timeout", float, label="First-token timeout (s)", group="load"),
    Option("--api-key-env", "OLLAMA_LOCUST_API_KEY", "name of the environment variable holding a bearer key for the openai/gateway API (the key itself is never an option)", label="API key variable", group="target"),
    Option("--gateway-path", "/api/chat", "path of the app gateway endpoint (--api gateway)", label="Gateway path", group="target"),
    Option("--gateway-payload", "", "JSON template file for the gateway request; placeholders {{prompt}} and {{model}}", label="Gateway payload file", group="target"),
    Option("--gateway-field", "", "dotted path of the reply text in the gateway's JSON answer (non-streaming gateways), e.g. 'recipe.text'", label="Gateway reply field", group="target"),
    Option("--gateway-stream", "auto", "gateway reply format", choices=("auto", "ndjson", "sse", "json"), label="Gateway reply format", group="target"),
    Option("--recipe-format", "schema", "RecipeUser: 'schema' sends the recipe JSON schema as structured output "
           "(Ollama format / OpenAI response_format json_schema) and validates the reply against it; 'json' asks "
           "for any JSON object (format json / json_object)", choices=RECIPE_FORMATS, label="Recipe format", group="load"),
    Option("--burst-period", 30.0, "BurstyUser: seconds between the class's bursts", float, label="Burst period (s)", group="load"),
)

RUN_OPTIONS: tuple[Option, ...] = (
    Option("--run-dir", "", "run folder to write (requests.csv, stages.csv, run.json); empty = runs/<UTC time>-<label>/ when --shape is set",
           web_ui=False, label="Run folder", group="run"),  # the folder exists before the web UI's form is filled in
    Option("--label", "", "a name for this run, used in the run folder name and by 'compare'", label="Run label", group="run"),
    Option("--shape", "none", "load shape: step (hold each user count), burst (base + spikes), ramp, rate (open-loop "
           "arrivals: hold each request rate of --rates)", choices=SHAPES, label="Load shape", group="load"),
    Option("--steps", "1,3,5,10", "user counts of the step shape, comma separated", label="Step user counts", group="load"),
    Option("--step-time", "60s", "how long each step is held (e.g. 30s, 2m)", label="Step time", group="load"),
    Option("--rates", "0.5,1,2,4", "--shape rate: offered request rates (requests/s across all load processes), comma "
           "separated; each is held for --step-time, whatever the server answers", label="Step rates (req/s)", group="load"),
    Option("--arrival", "poisson", "open-loop arrivals (--shape rate, --rate): how requests arrive — poisson (independent visitors: exponential gaps) "
           "or constant (evenly spaced)", choices=ARRIVALS, label="Arrival process", group="load"),
    Option("--max-in-flight", 1000, "open-loop arrivals (--shape rate, --rate): most requests in flight at once, across all load processes; an "
           "arrival beyond it is not sent and is recorded as dropped by the generator", int,
           label="Max requests in flight", group="load"),
    Option("--arrival-seed", 0, "open-loop arrivals: seed of the arrival streams (Poisson gaps) and of the user-class "
           "draws — the same seed gives the same arrival times on every run; 0 = a new seed every run", int,
           label="Arrival seed (0 = random)", group="load"),
    Option("--rate", 0.0, "open-loop arrivals without a plan (--shape none: the web UI, -t): requests/s across all "
           "load processes instead of -u users; the LLM tab's Rate field changes it while the test runs (a new rate "
           "starts a stage of its own); 0 = users", float, label="Request rate (req/s, 0 = users)", group="load"),
    Option("--settle", "0s", "settle window at the start of each step: its requests are left out of the step's numbers", label="Settle window", group="load"),
    Option("--step-spawn-rate", 0.0, "users started per second at a step change; 0 = all at once", float, label="Step spawn rate (users/s)", group="load"),
    Option("--slo-p95", 0.0, "end-to-end p95 latency objective in ms (0 = none): a step above it fails", float, label="E2E p95 objective (ms)", group="thresholds"),
    Option("--slo-ttft-p95", 0.0, "time-to-first-token p95 objective in ms (0 = none): a step above it fails; with "
           "neither objective given, the report judges by its default (TTFT p95 <= 2 s for streamed replies, "
           "E2E p95 <= 10 s otherwise)", float, label="TTFT p95 objective (ms)", group="thresholds"),
    Option("--min-success", 0.95, "success rate below which a step fails", float, label="Minimum success rate", group="thresholds"),
    Option("--stop-on-failure", False, "stop stepping after the first step that fails the thresholds", is_flag=True, label="Stop after a failed step", group="thresholds"),
    Option("--drain-timeout", 10.0, "seconds in-flight requests may finish after the last stage", float, label="Drain timeout (s)", group="load"),
    Option("--skip-preflight", False, "do not check the target and model before starting", is_flag=True, web_ui=False, label="Skip the target check", group="run"),
    Option("--skip-warmup", False, "do not send the warm-up request", is_flag=True, web_ui=False, label="Skip the warm-up", group="run"),
    Option("--run-context", "", "JSON object merged into run.json (set by 'ollama-locust step': its command line "
           "and the simulator's settings)", web_ui=False, label="Run context (JSON)", group="run"),
)

ALL_OPTIONS: tuple[Option, ...] = LOAD_OPTIONS + RUN_OPTIONS
_BY_DEST = {option.dest: option for option in ALL_OPTIONS}

# The planning commands' own options (`ollama-locust probe`, `ollama-locust predict`; docs/predict.md). They
# are not Locust options (no LOCUST_* variable, no web UI); both commands also take the rows of
# PROBE_ROWS / PREDICT_ROWS from the table above, with the same defaults.
PLANNING_OPTIONS: tuple[Option, ...] = (
    Option("--host", "http://127.0.0.1:11434", "probe: the server to measure", web_ui=False, group="probe"),
    Option("--max-time", "3m", "probe: the whole measurement takes at most this long (e.g. 90s, 3m); on a slow "
           "server it sends fewer requests and says so", web_ui=False, group="probe"),
    Option("--cold", False, "probe: unload the model first (keep_alive 0) to measure a cold load; without it a "
           "loaded model is never unloaded", is_flag=True, web_ui=False, group="probe"),
    Option("--max-streams", 8, "probe: most simultaneous streams of the concurrency measurement (2, 4, then 8 when "
           "the server is fast enough)", int, web_ui=False, group="probe"),
    Option("--user-class", DEFAULT_USER_CLASS, "probe: the user class whose prompts give the reply-length sample; "
           "predict: the user class to predict (StudentUser, RecipeUser, BurstyUser)", web_ui=False,
           group="probe, predict"),
    Option("--num-parallel", "", "predict: NUM_PARALLEL values of the what-if table, comma separated (empty: only "
           "the probe's effective slot count)", web_ui=False, group="predict"),
    Option("--seed", 0, "predict: seed of the predicted users' choices (prompts, turns, think time, reply lengths)",
           int, web_ui=False, group="predict"),
    Option("--band", 10, "predict: bootstrap replicates of the probe for the band of the predicted figures (10th-90th "
           "percentile); 0 = no band", int, web_ui=False, group="predict"),
    Option("--predict", "", "step: after the run, predict the same plan from this probe.json (in RUN_DIR/predicted/) "
           "and print the predicted figures beside the measured ones with their relative error", web_ui=False,
           group="step"),
    Option("--out", "runs", "probe: folder of probe.json; predict: parent folder of the run folder", web_ui=False,
           group="probe, predict"),
)
PROBE_ROWS = ("model", "api", "api_key_env", "prompts", "num_predict", "request_timeout", "first_token_timeout")
PREDICT_ROWS = ("steps", "step_time", "settle", "think_time", "num_predict", "prompts", "slo_p95", "slo_ttft_p95",
                "min_success", "drain_timeout", "stop_on_failure", "label", "run_dir")
_PLANNING = {option.dest: option for option in PLANNING_OPTIONS}


def add_planning(parser, rows: tuple[str, ...], own: tuple[str, ...], aliases: dict[str, tuple[str, ...]] | None = None) -> None:
    """Add ``rows`` of the option table and ``own`` planning options to a probe/predict parser, with their defaults."""
    for dest in (*rows, *own):
        option = _BY_DEST.get(dest) or _PLANNING[dest]
        flags = (option.flag, *(aliases or {}).get(dest, ()))
        if option.is_flag:
            parser.add_argument(*flags, dest=dest, action="store_true", default=option.default, help=option.help_text)
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": option.default, "type": option.type, "help": option.help_text}
        if option.choices:
            kwargs["choices"] = list(option.choices)
        parser.add_argument(*flags, **kwargs)


def register(parser) -> None:
    """Add every option to Locust's argument parser (the ``init_command_line_parser`` hook)."""
    for option in ALL_OPTIONS:
        kwargs: dict[str, Any] = {"help": option.help_text, "env_var": option.env_var, "include_in_web_ui": option.web_ui}
        if option.is_flag:
            parser.add_argument(option.flag, action="store_true", default=option.default, **kwargs)
            continue
        kwargs.update(default=option.default, type=option.type)
        if option.choices:
            kwargs["choices"] = list(option.choices)
        parser.add_argument(option.flag, **kwargs)


def add_passthrough(parser, skip: tuple[str, ...] = (), aliases: dict[str, tuple[str, ...]] | None = None,
                    launcher_defaults: dict[str, str] | None = None) -> None:
    """Add the rows to another argparse parser (``ollama-locust step``) with no default of their own:
    an option the user did not give stays unset, so Locust's own default, ``locust.conf`` or the
    ``LOCUST_*`` variable applies. ``aliases`` maps a dest to extra flag spellings;
    ``launcher_defaults`` (dest -> text) says in the help what the launcher passes when it is not given."""
    import argparse

    group = parser.add_argument_group("load options (passed to locust; defaults from the option table)")
    for option in ALL_OPTIONS:
        if option.dest in skip:
            continue
        flags = (option.flag, *(aliases or {}).get(option.dest, ()))
        shown = (launcher_defaults or {}).get(option.dest)
        kwargs: dict[str, Any] = {"dest": option.dest, "default": argparse.SUPPRESS,
                                  "help": f"{option.help} ({shown})" if shown else option.help_text}
        if option.is_flag:
            group.add_argument(*flags, action="store_true", **kwargs)
            continue
        kwargs["type"] = option.type
        if option.choices:
            kwargs["choices"] = list(option.choices)
        group.add_argument(*flags, **kwargs)


def given_flags(values: dict[str, Any]) -> list[str]:
    """Locust command-line flags for ``values`` (dest -> value), in the option table's order."""
    flags: list[str] = []
    for option in ALL_OPTIONS:
        if option.dest not in values:
            continue
        value = values[option.dest]
        if option.is_flag:
            flags += [option.flag] if value else []
        else:
            flags += [option.flag, str(value)]
    return flags


def given(namespace) -> dict[str, Any]:
    """The rows the user gave on a parser built with :func:`add_passthrough` (dest -> value)."""
    return {option.dest: getattr(namespace, option.dest) for option in ALL_OPTIONS if hasattr(namespace, option.dest)}


THRESHOLDS = ("slo_p95", "slo_ttft_p95", "min_success")


def add_report_thresholds(parser) -> None:
    """The threshold rows for ``ollama-locust report``: unset means "as the run had them" (run.json)."""
    for dest in THRESHOLDS:
        option = _BY_DEST[dest]
        parser.add_argument(option.flag, dest=dest, type=option.type, default=None,
                            help=f"{option.help} (default: the run's own, from run.json; else {option.default})")


def markdown_table() -> str:
    """docs/options.md's table, generated from the rows (tests/scenarios/test_options.py holds them equal)."""
    lines = ["| option | `LOCUST_*` variable | default | web UI form | meaning |", "|---|---|---|---|---|"]
    for option in ALL_OPTIONS:
        choices = " (" + " \\| ".join(option.choices) + ")" if option.choices else ""
        lines.append(f"| `{option.flag}` | `{option.env_var}` | `{option.shown_default}` | {'yes' if option.web_ui else 'no'} "
                     f"| {option.help}{choices} |")
    lines += ["", "The planning commands' own options (`ollama-locust probe`, `ollama-locust predict`; not Locust "
              "options). probe also takes " + ", ".join(f"`{_BY_DEST[d].flag}`" for d in PROBE_ROWS) + "; predict "
              "also takes " + ", ".join(f"`{_BY_DEST[d].flag}`" for d in PREDICT_ROWS) + " (`--users` for "
              "`--steps`) from the table above.", "", "| option | command | default | meaning |", "|---|---|---|---|"]
    for option in PLANNING_OPTIONS:
        lines.append(f"| `{option.flag}` | {option.group} | `{option.shown_default}` | {option.help} |")
    return "\n".join(lines) + "\n"


def values(parsed_options) -> dict[str, Any]:
    """The project's options as a plain dict (for run.json); secrets are never options."""
    return {option.dest: getattr(parsed_options, option.dest, option.default) for option in ALL_OPTIONS
            if option.dest != "run_context"}


def default(dest: str) -> Any:
    """The option table's default of one option."""
    return _BY_DEST[dest].default


def get(environment, dest: str) -> Any:
    """An option's value for this environment: parsed (CLI, locust.conf, env, web UI form) or the default.

    Works in library mode too (``environment.parsed_options`` is None there).
    """
    parsed = getattr(environment, "parsed_options", None)
    if parsed is not None and hasattr(parsed, dest):
        return getattr(parsed, dest)
    return _BY_DEST[dest].default


def web_form() -> list[Option]:
    """The options the web UI's form shows, in its sections' order (GROUPS), the table's order within one."""
    order = {group: index for index, (group, _) in enumerate(GROUPS)}
    return sorted((option for option in ALL_OPTIONS if option.web_ui), key=lambda option: order[option.group])


TABLE_START, TABLE_END = "<!-- options table: python -m ollama_locust.options docs/options.md -->", "<!-- end of options table -->"


def rewrite_docs(path: str) -> None:
    """Put the generated table between the markers of ``path`` (docs/options.md)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{head}{TABLE_START}\n{markdown_table()}{TABLE_END}{tail}")


if __name__ == "__main__":
    import sys

    rewrite_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/options.md")
