"""The fit: the probe's measurements -> the fitted server (probe.json's ``server``), as pure functions.

``ollama-locust probe`` fits once (:func:`fit_server`); ``ollama-locust predict --band N`` refits N times
on bootstrap resamples of the same measurements (:func:`resample`) for the band of its figures. The
measurements are the probe's records as ``probe.json`` keeps them: ``lone`` (one request at a time, 3
prompt lengths), ``rounds`` (k simultaneous streams: :func:`round_facts`) and the reply-length sample.
"""

from __future__ import annotations

import math
import random
import statistics

from ollama_locust import contract
from ollama_locust.simulator.text import CHAT_TEMPLATE_TOKENS, count_prompt_tokens

DEFAULT_REPLY_TOKENS = 32


def median(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def prompt_tokens(messages: list[dict], scale: float = 1.0) -> int:
    """The prompt tokens of a chat request, counted as the simulator counts them, times the fitted scale."""
    counted = sum(count_prompt_tokens(str(m.get("content", ""))) + CHAT_TEMPLATE_TOKENS for m in messages)
    return max(1, int(round(counted * scale)))


def stream_rate(record: dict) -> float | None:
    """A request's decode rate: the server's eval count / eval time, else the client's (tokens - 1) / streaming."""
    if record.get("eval_ms") and record.get("output_tokens"):
        return record["output_tokens"] / (record["eval_ms"] / 1000)
    return record.get("tokens_per_s")


def round_facts(k: int, records: list[dict]) -> dict:
    """One concurrency round: which of ``k`` simultaneous streams started before the first ended, and how
    fast those decoded (server eval rate when reported, else the client's)."""
    ok = [r for r in records if r.get("outcome") == contract.OK and r.get("ttft_ms") is not None]
    out = {"streams": k, "ok": len(ok), "started_together": None, "per_stream_tps": None, "rates": [],
           "ttft_ms": [], "e2e_ms": []}
    if not ok:
        return out
    first_end = min(r["start_time"] + r["e2e_ms"] / 1000 for r in ok)
    together = [r for r in ok if r["start_time"] + r["ttft_ms"] / 1000 < first_end]
    rates = [rate for rate in map(stream_rate, together) if rate]
    out.update(started_together=len(together), per_stream_tps=median(rates), rates=[round(x, 4) for x in rates],
               ttft_ms=sorted(round(r["ttft_ms"], 3) for r in ok), e2e_ms=sorted(round(r["e2e_ms"], 3) for r in ok))
    return out


def fit_concurrency(decode_tps: float, rounds: list[dict]) -> tuple[int | None, float | None]:
    """(effective slots, beta) from the rounds: slots = most streams that ran at once; beta by least
    squares of ``decode_1 / rate_m - 1 = beta (m - 1)`` over the rounds where m > 1 streams shared."""
    measured = [r for r in rounds if r.get("started_together")]
    if not measured:
        return None, None
    slots = max(r["started_together"] for r in measured)
    num = den = 0.0
    for r in measured:
        m = r["started_together"]
        if m > 1 and r.get("per_stream_tps"):
            x = decode_tps / r["per_stream_tps"] - 1
            num += x * (m - 1)
            den += (m - 1) ** 2
    return slots, (num / den if den else None)


def fit_batch_curve(decode_tps: float, rounds: list[dict]) -> list[list]:
    """The batching curve the rounds measured: ``[[m, decode_1 / rate_m], ...]`` for each number m > 1 of
    streams that ran at once (the median where two rounds ran m), m ascending, each factor at least the
    one before (a step with more busy slots does not take less time) and at least 1."""
    factors: dict[int, list[float]] = {}
    for r in rounds:
        m = r.get("started_together")
        if m and m > 1 and r.get("per_stream_tps"):
            factors.setdefault(m, []).append(decode_tps / r["per_stream_tps"])
    curve, floor = [], 1.0
    for m in sorted(factors):
        floor = max(floor, median(factors[m]))
        curve.append([m, round(floor, 4)])
    return curve


def line(points: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """(slope, intercept) of the least-squares line through ``points``; (None, None) when undefined."""
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return None, None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


class FitError(ValueError):
    """The measurements do not determine the server (one line)."""


def fit_server(lone: list[dict], rounds: list[dict], load_ms: float | None, replies: list[int]) -> tuple[dict, list[str]]:
    """(probe.json's ``server`` object with its ``timing_source``, the estimates it rests on)."""
    estimates: list[str] = []
    server_side = bool(lone) and all(r.get("eval_ms") is not None and r.get("prompt_eval_ms") is not None for r in lone)
    if server_side:
        decode = median([stream_rate(r) for r in lone])
        tokens = sum(r.get("prompt_tokens") or 0 for r in lone)
        seconds = sum((r.get("prompt_eval_ms") or 0) / 1000 for r in lone)
        prefill = tokens / seconds if seconds > 0 else math.inf
        overhead = median([(r["ttft_ms"] - r["prompt_eval_ms"] - (r.get("load_ms") or 0)) / 1000 - 1 / decode
                           for r in lone if r.get("ttft_ms") is not None]) if decode else None
    else:
        estimates.append("decode rate: from client timings ((tokens - 1) / (E2E - TTFT)): the server reports no eval_duration")
        estimates.append("prefill rate and client overhead: fitted to TTFT against prompt tokens (no prompt_eval_duration)")
        decode = median([r.get("tokens_per_s") for r in lone])
        points = [((r.get("prompt_tokens") or r["counted_prompt_tokens"]), r["ttft_ms"] / 1000) for r in lone
                  if r.get("ttft_ms") is not None]
        slope, intercept = line(points)
        prefill = 1 / slope if slope and slope > 0 else math.inf
        overhead = max(0.0, (intercept or 0.0) - 1 / decode) if decode else 0.0
    if not decode or decode <= 0:
        raise FitError("no decode rate could be measured (no request streamed 2 tokens or more)")
    counted = sum(r.get("counted_prompt_tokens") or 0 for r in lone)
    reported = sum(r.get("prompt_tokens") or 0 for r in lone)
    scale = reported / counted if counted and reported else 1.0
    if not reported:
        estimates.append("prompt tokens: the server reports none; the simulator's count is used as it is")
    slots, beta = fit_concurrency(decode, rounds)
    if slots is None:
        slots = 1
        estimates.append("slots: no concurrency round ran (--max-time too short): 1 assumed")
    elif rounds and slots >= rounds[-1]["streams"]:
        estimates.append(f"slots: at least {slots} (every stream of the largest round ran at once)")
    if beta is None:
        beta = 1.0
        estimates.append("beta (batch slowdown): not measured (no round ran two streams at once); 1.0 assumed, "
                         "i.e. more slots add no total throughput")
    server = {
        "timing_source": "server" if server_side else "client",
        "decode_tps": round(decode, 4),
        "prefill_tps": round(prefill, 4) if math.isfinite(prefill) else 1e9,
        "beta": round(max(0.0, beta), 4),
        "batch_curve": fit_batch_curve(decode, rounds),
        "load_time": round((load_ms or 0.0) / 1000, 4),
        "num_parallel": int(slots),
        "reply_tokens": int(median(replies) or DEFAULT_REPLY_TOKENS),
        "overhead_s": round(max(0.0, overhead or 0.0), 6),
        "prompt_token_scale": round(scale, 4),
    }
    return server, estimates


def resample(probe: dict, rng: random.Random) -> dict:
    """A bootstrap replicate of a probe.json: its lone requests, each round's per-stream rates and each reply
    sample drawn again with replacement, and the server refitted (slots and load time kept)."""
    measurements = probe.get("measurements") or {}
    lone = measurements.get("lone") or []
    server = dict(probe["server"])
    if lone:
        drawn = [rng.choice(lone) for _ in lone]
        rounds = []
        for r in measurements.get("rounds") or []:
            rates = r.get("rates") or []
            rounds.append({**r, "per_stream_tps": median([rng.choice(rates) for _ in rates]) if rates else r.get("per_stream_tps")})
        try:
            refit, _ = fit_server(drawn, rounds, server.get("load_time", 0) * 1000, [])
        except FitError:
            refit = server
        for key in ("decode_tps", "prefill_tps", "overhead_s", "prompt_token_scale"):
            server[key] = refit[key]
        if any(r.get("started_together", 0) and r["started_together"] > 1 for r in rounds):
            server["beta"], server["batch_curve"] = refit["beta"], refit["batch_curve"]
    replies = {name: [rng.choice(sample) for _ in sample] for name, sample in (probe.get("reply_tokens") or {}).items()
               if sample}
    return {**probe, "server": server, "reply_tokens": replies}
