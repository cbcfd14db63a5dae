"""The report of a rate run (--shape rate) from a hand-made run folder: an open-loop FIFO server with one slot
at a rate it carries and one it does not — keyed by rate, achieved/dropped/in flight, the queue growth rule,
dropped arrivals out of the success rate and the verdicts, the rate limit."""

from __future__ import annotations

import math

from ollama_locust import contract
from ollama_locust.reports import analyse, write_report
from tests.reports.conftest import T0, read_text, record

SERVICE_S = 0.5  # one slot, FIFO: 2 answers/s at most


def open_loop(stage: int, rate: float, *, duration=60.0, dropped_every=0) -> list[dict]:
    """Constant arrivals at ``rate`` into one FIFO slot of SERVICE_S; every ``dropped_every``-th not sent."""
    rows, free = [], T0 + stage * duration
    for k in range(int(rate * duration)):
        t = T0 + stage * duration + k / rate
        if dropped_every and k % dropped_every == dropped_every - 1:
            rows.append(record(stage, 0, None, outcome=contract.DROPPED, start=t, error="not sent: 3 in flight"))
            continue
        begin = max(t, free)
        free = begin + SERVICE_S
        wait_ms = (begin - t) * 1000.0
        rows.append(record(stage, 0, (free - t) * 1000.0, ttft_ms=wait_ms + 50.0, tps=100.0, tokens=50, start=t,
                           queue_ms=wait_ms, load_ms=0.0, prompt_eval_ms=50.0, eval_ms=450.0,
                           total_ms=(free - t) * 1000.0))
    return rows


def stages(rates, duration=60.0):
    return [{"stage": i, "users": 0, "start_time": T0 + i * duration, "end_time": T0 + (i + 1) * duration,
             "settle_s": 0, "kind": "rate", "rate": r} for i, r in enumerate(rates)]


def test_rate_run_keyed_by_rate_finds_queue_growth_and_a_rate_limit(make_run):
    path = make_run(open_loop(0, 1.0) + open_loop(1, 4.0), stages([1.0, 4.0]), {"options": {"max_in_flight": 1000}})
    a = analyse(path, slo_ttft_p95_ms=2000.0)
    low, high = a.steps
    assert a.rate_run and low.is_rate and low.metrics["offered_rate"] == 1.0
    assert low.metrics["achieved_rate"] == 1.0 and low.metrics["dropped"] == 0
    assert low.queue_trend["growing"] is False
    assert high.queue_trend["growing"] is True and high.queue_trend["thirds_ms"][2] > 20000
    assert high.metrics["in_flight_p95"] > 50  # the queue piles up: arrivals at 4/s, answers at 2/s
    report = write_report(path, plots=False)
    text = read_text(f"{path}/{contract.RESULTS_MD}")
    assert text.splitlines()[2].startswith("| Offered rate (req/s) | Achieved (req/s) | Dropped | In flight p50 | In flight p95 | Send lag p99 | Requests |")
    assert "Users held" not in text.splitlines()[2]
    conclusion = report.data["conclusion"]
    assert conclusion["queue_growth_rate"] == 4.0 and conclusion["largest_rate_meeting_slo"] == 1.0
    assert conclusion["rate_limit"] == {"rate_per_s": 1.0, "burst": 1, "from_stage": 0}
    assert "The queue grows without bound from 4 req/s" in text and "rate=1r/s" in text
    assert conclusion["failure_point_users"] is None and conclusion["failure_point_rate"] == 4.0


def test_dropped_arrivals_out_of_success_rate_and_verdicts(make_run):
    path = make_run(open_loop(0, 1.0, dropped_every=4), stages([1.0]))
    a = analyse(path)
    step = a.steps[0]
    assert step.metrics["dropped"] == 15 and step.metrics["requests"] == 60
    assert step.metrics["success_rate"] == 1.0
    assert math.isclose(step.metrics["achieved_rate"], 45 / 60)
    assert a.verdicts[0] == ""  # left out: the server was not offered the rate the row names
    assert any("15 dropped by the generator" in note for note in step.notes)


def test_a_users_run_keeps_its_table():
    from ollama_locust.reports._step_metrics import STEP_METRICS, table_metrics

    assert table_metrics(False) == STEP_METRICS
