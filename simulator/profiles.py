"""The timing model: a table of profiles named after real set-ups, and pure functions over it.

Nothing here does I/O or reads a clock. The server (``scheduler.py``) only executes what these
functions say: how long a model load takes, how long a prompt's prefill stalls the batch, and how
long one decode step lasts when ``n`` slots are busy (``t1 · (1 + β (n − 1))``, or a measured batching
curve; one token per busy slot per step). ``plan_single`` is the plan for a request that runs alone, used
by the docs and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    """One hardware + model set-up. Rates in tokens per second; ``math.inf`` means "no delay"."""

    name: str
    decode_tps: float  # single-stream decode rate; t1 = 1 / decode_tps
    prefill_tps: float  # prompt evaluation rate
    beta: float  # batch slowdown per extra busy slot
    load_time: float  # seconds to load the model into memory
    reply_tokens: int  # typical length of a long (recipe-sized) answer
    about: str
    #: measured batching curve: (busy slots m >= 2, step time with m busy / t1), m ascending, as a probe
    #: measured it; empty: the line 1 + beta (m - 1). See :func:`step_factor`.
    batch_curve: tuple[tuple[int, float], ...] = ()

    @property
    def t1(self) -> float:
        """Seconds per decode step with one busy slot."""
        return 0.0 if math.isinf(self.decode_tps) else 1.0 / self.decode_tps


INF = math.inf

#: The profiles. Figures are approximate single-user numbers from ../shared/ollama-api.md.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("pi5-llama3.2-3b", decode_tps=5.0, prefill_tps=20.0, beta=0.9, load_time=8.0, reply_tokens=150,
                about="Raspberry Pi 5 8 GB, llama3.2 3B Q4: ~35 s for a ~150-token recipe answer"),
        Profile("cpu2-qwen2.5-1.5b", decode_tps=9.0, prefill_tps=45.0, beta=0.95, load_time=3.0, reply_tokens=150,
                about="2-CPU container, qwen2.5 1.5B Q4: CPU-bound, total throughput nearly flat"),
        Profile("gpu-llama3-8b", decode_tps=100.0, prefill_tps=2500.0, beta=0.3, load_time=4.0, reply_tokens=150,
                about="desktop GPU, llama3 8B Q4: ~100 tok/s single stream, gains up to ~3x in parallel"),
        Profile("instant", decode_tps=INF, prefill_tps=INF, beta=0.0, load_time=0.0, reply_tokens=150,
                about="no delays: as fast as the machine goes (tests, benchmarks)"),
    )
}
DEFAULT_PROFILE = "gpu-llama3-8b"


PROBE_FORMAT = "ollama-locust-probe/1"  # probe.json's "format": the fitted server is its "server" object


class ProfileFileError(ValueError):
    """A profile file (probe.json) that cannot be used; the message is one line."""


def profile_from_probe(data: dict, source: str = "probe.json") -> tuple[Profile, int]:
    """The fitted server of a probe.json document: (its Profile, its effective NUM_PARALLEL).

    ``data["server"]`` holds ``decode_tps``, ``prefill_tps``, ``beta``, ``load_time``, ``num_parallel``
    and ``reply_tokens`` (written by ``ollama-locust probe``). Raises ProfileFileError (one line).
    """
    if not isinstance(data, dict) or data.get("format") != PROBE_FORMAT or not isinstance(data.get("server"), dict):
        raise ProfileFileError(f"{source}: not a probe file (expected \"format\": \"{PROBE_FORMAT}\" and a "
                               "\"server\" object; write one with 'ollama-locust probe')")
    server = data["server"]
    values = {}
    for key, low in (("decode_tps", 0.0), ("prefill_tps", 0.0), ("beta", -1.0), ("load_time", -1.0)):
        value = server.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low or math.isnan(value):
            raise ProfileFileError(f"{source}: server.{key} must be a number > {low:g}, got {value!r}")
        values[key] = float(value)
    slots = server.get("num_parallel")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ProfileFileError(f"{source}: server.num_parallel must be a whole number >= 1, got {slots!r}")
    values["batch_curve"] = _batch_curve(server.get("batch_curve"), source)
    reply = server.get("reply_tokens", 150)
    reply = int(reply) if isinstance(reply, (int, float)) and not isinstance(reply, bool) and reply >= 1 else 150
    target = data.get("target") or {}
    about = f"fitted by ollama-locust probe to {target.get('model', '?')} at {target.get('host', '?')}"
    return Profile(name="probe", reply_tokens=reply, about=about, **values), slots


def _batch_curve(value, source: str) -> tuple[tuple[int, float], ...]:
    """probe.json's optional ``server.batch_curve`` ([[m, factor], ...]) as Profile.batch_curve."""
    if value is None:
        return ()
    problem = f"{source}: server.batch_curve must be a list of [busy slots >= 2, step factor >= 1], got {value!r}"
    if not isinstance(value, list):
        raise ProfileFileError(problem)
    curve = []
    for point in value:
        if (not isinstance(point, list) or len(point) != 2 or isinstance(point[0], bool) or not isinstance(point[0], int)
                or point[0] < 2 or isinstance(point[1], bool) or not isinstance(point[1], (int, float))
                or not point[1] >= 1 or math.isinf(point[1])):
            raise ProfileFileError(problem)
        curve.append((point[0], float(point[1])))
    if [m for m, _ in curve] != sorted({m for m, _ in curve}):
        raise ProfileFileError(problem)
    return tuple(curve)


def load_profile_file(path: str) -> tuple[Profile, int]:
    """:func:`profile_from_probe` of a file; ProfileFileError when it cannot be read or used."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise ProfileFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:
        raise ProfileFileError(f"{path}: not JSON ({error})") from None
    return profile_from_probe(data, path)


def with_overrides(profile: Profile, *, decode_tps=None, prefill_tps=None, beta=None, load_time=None) -> Profile:
    """The profile with any non-None override applied (the CLI's --decode-tps etc.); a given beta replaces
    a measured batching curve."""
    changes = {k: v for k, v in dict(decode_tps=decode_tps, prefill_tps=prefill_tps, beta=beta,
                                     load_time=load_time).items() if v is not None}
    if beta is not None:
        changes["batch_curve"] = ()
    return replace(profile, **changes) if changes else profile


def step_factor(profile: Profile, busy: int) -> float:
    """How many times one stream's step a decode step with ``busy`` (>= 1) slots lasts.

    Without a measured curve, the line ``1 + beta (busy - 1)``. With one (the probe's rounds), straight
    lines between its points, starting at (1, 1); past its last point, the last segment's slope goes on.
    A real server's curve is seldom a line: llama-server on one CPU thread, Gemma 3 270M, measured 1.8-2.1×
    at 2 streams and 2.5-2.6× at 4 (docs/predict.md), which no single beta fits at both.
    """
    curve = profile.batch_curve
    if not curve:
        return 1.0 + profile.beta * (busy - 1)
    below = (1, 1.0)
    for point in curve:
        if busy <= point[0]:
            (m0, f0), (m1, f1) = below, point
            return f0 + (f1 - f0) * (busy - m0) / (m1 - m0)
        below = point
    (m0, f0), (m1, f1) = (curve[-2] if len(curve) > 1 else (1, 1.0)), curve[-1]
    return f1 + (f1 - f0) / (m1 - m0) * (busy - m1)


def step_time(profile: Profile, busy: int) -> float:
    """Seconds for one decode step with ``busy`` slots generating (one token each)."""
    if busy <= 0:
        return 0.0
    return profile.t1 * step_factor(profile, busy)


def prefill_time(profile: Profile, prompt_tokens: int) -> float:
    """Seconds to evaluate a prompt; the whole batch stalls meanwhile."""
    if math.isinf(profile.prefill_tps) or prompt_tokens <= 0:
        return 0.0
    return prompt_tokens / profile.prefill_tps


def plan_single(profile: Profile, prompt_tokens: int, output_tokens: int) -> list[float]:
    """Offsets (s, from the start of prefill) at which each token of a lone request is sent.

    The first token comes out of the step that carries the prefill; every later token one step
    with one busy slot later.
    """
    start = prefill_time(profile, prompt_tokens)
    t1 = step_time(profile, 1)
    return [start + t1 * (i + 1) for i in range(output_tokens)]


def throughput(profile: Profile, busy: int) -> float:
    """Total tokens/s across ``busy`` slots in steady decode (inf for the instant profile)."""
    st = step_time(profile, busy)
    return INF if st == 0 else busy / st


def markdown_table() -> str:
    """The profile table for docs/simulator.md, generated from PROFILES."""
    def num(x: float) -> str:
        return "∞" if math.isinf(x) else f"{x:g}"

    rows = ["| profile | decode tok/s (1 stream) | prefill tok/s | β | load s | reply tokens | total tok/s at 4 busy | set-up |",
            "|---|---|---|---|---|---|---|---|"]
    for p in PROFILES.values():
        tp = throughput(p, 4)
        rows.append(f"| `{p.name}` | {num(p.decode_tps)} | {num(p.prefill_tps)} | {p.beta:g} | {p.load_time:g} | "
                    f"{p.reply_tokens} | {num(round(tp, 1))} | {p.about} |")
    return "\n".join(rows)
