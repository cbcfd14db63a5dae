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


def prompt_tokens(messages: list[dict], scale: float = 1.0, template: float | None = None,
                  exact_replies: bool = False) -> int:
    """The server's prompt tokens of a chat request: each message's text counted as the simulator counts it,
    times the fitted ``scale``, plus ``template`` tokens per message (the chat template's role headers; by
    default the simulator's own ``CHAT_TEMPLATE_TOKENS``, scaled). With ``exact_replies`` an assistant
    message's count is taken as it is: the predictor's replies are as many words as the server's tokens."""
    per_message = scale * CHAT_TEMPLATE_TOKENS if template is None else template
    total = 0.0
    for message in messages:
        words = count_prompt_tokens(str(message.get("content", "")))
        total += (words if exact_replies and message.get("role") == "assistant" else scale * words) + per_message
    return max(1, int(round(total)))


def token_model(lone: list[dict]) -> tuple[float, float | None]:
    """(scale, template tokens per message) of the server's tokenizer against the simulator's counter: the
    least-squares line of the lone requests' reported prompt tokens against their counted text tokens (each a
    single user message). Without two text lengths (or a server that reports no counts, or a line that
    makes no sense) the ratio of the sums, with the simulator's template scaled alike (template None)."""
    points = [(r["counted_text_tokens"], r["prompt_tokens"]) for r in lone
              if r.get("prompt_tokens") and r.get("counted_text_tokens") is not None]
    slope, intercept = line(points)
    if slope is not None and slope > 0 and intercept is not None and intercept >= 0:
        return slope, intercept
    counted = sum(r.get("counted_prompt_tokens") or 0 for r in lone)
    reported = sum(r.get("prompt_tokens") or 0 for r in lone)
    return (reported / counted if counted and reported else 1.0), None


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


def fit_server(lone: list[dict], rounds: list[dict], load_ms: float | None, replies: list[int],
               follow_up: dict | None = None) -> tuple[dict, list[str]]:
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
    prefill_s = (lambda tokens: tokens / prefill) if server_side else (lambda tokens: (intercept or 0.0) + tokens / prefill)
    if not decode or decode <= 0:
        raise FitError("no decode rate could be measured (no request streamed 2 tokens or more)")
    scale, template = token_model(lone)
    if not any(r.get("prompt_tokens") for r in lone):
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
    again = reply_reprefilled(follow_up or {}, prefill_s, server_side)
    if again is None and (follow_up or {}).get("measured"):
        estimates.append("follow-up: the prefill is too fast to tell whether the previous reply is computed again; kept assumed")
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
        "prompt_template_tokens": None if template is None else round(template, 3),
        "reply_reprefilled": again,
    }
    return server, estimates


def reply_reprefilled(follow_up: dict, prefill_s, server_side: bool) -> bool | None:
    """From the probe's follow-up pair: is the previous reply computed again? The follow-up's prefill (server
    side: its prompt eval time; else its TTFT) against the fitted prefill of its new tokens without the reply
    (the slot kept it) and with it; the nearer wins. None: not measured, or the two differ by under 20 ms."""
    if not follow_up.get("measured"):
        return None
    first, second = follow_up["first"], follow_up["second"]
    reply = first.get("output_tokens") or 0
    before = first.get("prompt_tokens") or first.get("counted_prompt_tokens") or 0
    total = second.get("prompt_tokens") or second.get("counted_prompt_tokens") or 0
    new = max(1, total - before - reply)
    kept, again = prefill_s(new), prefill_s(new + reply)
    seen = (second["prompt_eval_ms"] if server_side and second.get("prompt_eval_ms") is not None else second["ttft_ms"]) / 1000
    if not math.isfinite(again - kept) or again - kept < 0.02:
        return None
    return seen > (kept + again) / 2


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
        for key in ("decode_tps", "prefill_tps", "overhead_s", "prompt_token_scale", "prompt_template_tokens"):
            server[key] = refit[key]
        if any(r.get("started_together", 0) and r["started_together"] > 1 for r in rounds):
            server["beta"], server["batch_curve"] = refit["beta"], refit["batch_curve"]
    replies = {name: [rng.choice(sample) for _ in sample] for name, sample in (probe.get("reply_tokens") or {}).items()
               if sample}
    return {**probe, "server": server, "reply_tokens": replies}
