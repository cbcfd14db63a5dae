"""The figures both sides judge by, defined once: a percentile, the threshold check, their wording.

The live side (the progress line, ``--stop-on-failure``, the web UI's LLM tab) and the report use these,
so a step that stops the run and the report's verdict on it say the same thing in the same words. Pure
Python, no imports: workers load it too. The report's percentiles come from ``numpy.percentile`` with
method ``linear``, the same definition as :func:`percentile` here (tests hold them equal).
"""

from __future__ import annotations

import math
from typing import Sequence


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of *sorted* values, linear interpolation between the two closest
    ranks (numpy's default method); None for no values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def format_seconds(ms: float) -> str:
    """A duration given in ms, in seconds with the digits that matter: 0.065 s, 1.02 s, 12.3 s, 140 s."""
    seconds = ms / 1000.0
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    return f"{seconds:.3f} s"


def format_ratio(ratio: float) -> str:
    """A fraction as a percentage with one decimal: 0.5 -> '50.0 %'."""
    return f"{ratio * 100:.1f} %"


def success_rate(ok: int, judged: int) -> float | None:
    """Successful requests over the requests judged (every outcome but ``cut_short``); None for none."""
    return ok / judged if judged else None


def breaches(rate: float | None, p95_ms: float | None, *, min_success: float, slo_p95_ms: float | None,
             ttft_p95_ms: float | None = None, slo_ttft_p95_ms: float | None = None) -> list[str]:
    """Why a step fails its thresholds (empty when it passes): the one wording everywhere."""
    reasons = []
    if rate is not None and rate < min_success:
        reasons.append(f"success rate {format_ratio(rate)} < {format_ratio(min_success)}")
    if slo_p95_ms and p95_ms is not None and p95_ms > slo_p95_ms:
        reasons.append(f"p95 {format_seconds(p95_ms)} > SLO {format_seconds(slo_p95_ms)}")
    if slo_ttft_p95_ms and ttft_p95_ms is not None and ttft_p95_ms > slo_ttft_p95_ms:
        reasons.append(f"TTFT p95 {format_seconds(ttft_p95_ms)} > SLO {format_seconds(slo_ttft_p95_ms)}")
    return reasons


# The load generator's own limits (issue 17): past these a process's timestamps are its own lateness,
# not the server's. One load process runs on one core; its gevent hub wakes a 100 ms timer late when it
# is short of CPU or a greenlet hogs it.
GENERATOR_CPU_LIMIT = 0.9  # of one core
GENERATOR_LAG_P99_MS = 20.0  # p99 lateness of the hub's 100 ms timer over a second


def generator_breaches(cpu: float | None, lag_p99_ms: float | None) -> list[str]:
    """Why a load process could not keep up (empty when it could): the one wording everywhere."""
    reasons = []
    if cpu is not None and cpu > GENERATOR_CPU_LIMIT:
        reasons.append(f"a load process used {format_ratio(cpu)} of a core (limit {format_ratio(GENERATOR_CPU_LIMIT)})")
    if lag_p99_ms is not None and lag_p99_ms > GENERATOR_LAG_P99_MS:
        reasons.append(f"its hub ran {lag_p99_ms:.0f} ms late at p99 (limit {GENERATOR_LAG_P99_MS:.0f} ms)")
    return reasons


# Where a reply's tokens arrived (issue 13): the one rule for "Tokens/s (total)", used record by record by
# the web UI's live tab and by the report (reports/_window.py vectorises the records without buckets).
def parse_token_arrivals(cell) -> tuple[float, list[int]] | None:
    """(bucket width in ms, counts) from one ``token_arrivals`` cell; None when empty or malformed."""
    if not isinstance(cell, str) or ":" not in cell:
        return None
    width, _, counts = cell.partition(":")
    try:
        w = float(width)
        values = [int(c) for c in counts.split(",")] if counts else []
    except ValueError:
        return None
    if not (w > 0) or not values or min(values) < 0:
        return None
    return w, values


def token_spans(start: float, ttft_ms: float | None, e2e_ms: float | None, tokens: float,
                cell=None) -> list[tuple[float, float, float]]:
    """A reply's output tokens as (lo, hi, tokens) spans in unix seconds.

    With a ``token_arrivals`` cell, the server's token count is spread over the buckets in proportion to
    their content chunks, each bucket clipped to first token .. last byte; without one, evenly over first
    token .. last byte, or all at the last byte when there is no first token (``stream: false``)."""
    if not tokens or tokens <= 0 or start is None or not math.isfinite(start):
        return []
    first = start + ttft_ms / 1000.0 if ttft_ms is not None and math.isfinite(ttft_ms) else math.nan
    last = start + e2e_ms / 1000.0 if e2e_ms is not None and math.isfinite(e2e_ms) else math.nan
    parsed = parse_token_arrivals(cell)
    if parsed is not None and sum(parsed[1]) > 0:
        width, counts = parsed
        scale, w, spans = tokens / sum(counts), width / 1000.0, []
        for k, c in enumerate(counts):
            if c:
                lo, hi = start + k * w, start + (k + 1) * w
                lo = max(lo, first) if math.isfinite(first) else lo
                hi = min(hi, last) if math.isfinite(last) else hi
                spans.append((lo, max(hi, lo), c * scale))
        return spans
    if not math.isfinite(last):
        return []
    lo = first if math.isfinite(first) and first <= last else last
    return [(lo, last, float(tokens))]


def tokens_between(spans, lo: float, hi: float) -> float:
    """Tokens of ``spans`` that arrived in ``[lo, hi)``: a span cut by an edge counts in proportion."""
    total = 0.0
    for s_lo, s_hi, tokens in spans:
        if s_hi > s_lo:
            overlap = min(s_hi, hi) - max(s_lo, lo)
            if overlap > 0:
                total += tokens * overlap / (s_hi - s_lo)
        elif lo <= s_lo < hi:
            total += tokens
    return total
