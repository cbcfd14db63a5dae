"""The live progress line of a headless run (master or single process).

Printed to stdout with a fixed prefix, so ``ollama-locust step`` can show it while Locust's own log
goes to the run folder.
"""

from __future__ import annotations

from ollama_locust import contract, stats
from ollama_locust.scenarios.record_sink import StageTally

PREFIX = "[ollama-locust]"


def _seconds(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.2f}s"


def progress_line(stage_index: int | None, stage_count: int | None, users: int, tally: StageTally | None,
                  time_left_s: float | None, in_flight_users: int, rate: float | None = None) -> str:
    """``rate``: a rate stage's offered requests/s (then ``in_flight_users`` counts requests in flight)."""
    parts = []
    if stage_index is not None and rate is not None:
        of = f"/{stage_count}" if stage_count else ""
        parts.append(f"step {stage_index + 1}{of}: {rate:g} req/s offered ({in_flight_users} in flight)")
    elif stage_index is not None:
        of = f"/{stage_count}" if stage_count else ""
        parts.append(f"step {stage_index + 1}{of}: {users} users ({in_flight_users} running)")
    else:
        parts.append(f"{in_flight_users} users running")
    tally = tally or StageTally()
    counted = tally.counted
    failures = ", ".join(f"{tally.outcomes[o]} {o}" for o in contract.FAILURE_OUTCOMES if tally.outcomes[o])
    dropped = tally.outcomes[contract.DROPPED]
    parts.append(f"{counted} requests" + (f" ({failures})" if failures else ", no failures")
                 + (f", {dropped} dropped by the generator" if dropped else ""))
    parts.append(f"p50 {_seconds(stats.percentile(sorted(tally.ok_e2e_ms), 50))} p95 {_seconds(stats.percentile(sorted(tally.ok_e2e_ms), 95))}")
    parts.append(f"TTFT p50 {_seconds(stats.percentile(sorted(tally.ttft_ms), 50))}")
    if time_left_s is not None:
        parts.append(f"{max(time_left_s, 0):.0f}s left")
    return f"{PREFIX} " + " | ".join(parts)
