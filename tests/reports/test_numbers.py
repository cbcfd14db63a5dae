"""The table's numbers against numpy on hand-made records."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from ollama_locust.reports import STEP_METRICS, analyse, write_report
from tests.reports.conftest import T0, record, stage_rows
from tests.reports.conftest import read_text as _read


def test_public_surface_is_sorted_and_import_light():
    import subprocess

    from ollama_locust import reports

    assert reports.__all__ == sorted(reports.__all__)
    code = ("import sys, reports, reports.cli; "
            "bad = [m for m in ('locust', 'gevent', 'pandas', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_percentiles_rates_and_exclusions_match_numpy(make_run):
    rng = np.random.default_rng(3)
    step0 = [1000.0, 1000.0, 1000.0, 2000.0, 2000.0, 5000.0]  # ties
    step1 = list(rng.lognormal(8, 0.5, 137).round(1))
    ttft1 = list(rng.lognormal(6, 0.3, 137).round(1))
    tps1 = list(rng.uniform(5, 50, 137).round(2))
    recs = [record(0, 1, v, ttft_ms=v / 10, tps=20.0, tokens=50) for v in step0]
    recs += [record(1, 4, e, ttft_ms=t, tps=r, tokens=10) for e, t, r in zip(step1, ttft1, tps1)]
    # Noise that must be left out or treated apart:
    recs += [record(1, 4, 99999.0, settle=True, start=T0 + 105)]  # settle window
    recs += [record(1, 4, 50.0, outcome="rejected", error="server busy")] * 3
    recs += [record(1, 4, 120000.0, outcome="timeout")] * 2
    recs += [record(1, 4, 100.0, outcome="cut_short")]
    recs += [record(2, 8, 4321.0, ttft_ms=321.0, tps=7.5, tokens=30)]  # a single-request step
    path = make_run(recs, stage_rows([1, 4, 8], duration=100.0, settle_s=10.0))
    a = analyse(path)
    s0, s1, s2 = (s.metrics for s in a.steps)

    assert s0["p50_ms"] == pytest.approx(np.percentile(step0, 50))
    assert s0["p95_ms"] == pytest.approx(np.percentile(step0, 95))
    assert s0["avg_ms"] == pytest.approx(np.mean(step0))
    assert s0["max_ms"] == 5000.0
    assert s0["success_rate"] == 1.0
    assert s0["req_per_s"] == pytest.approx(6 / 90.0)  # 100 s stage minus 10 s settle
    assert s0["tokens_per_s_total"] == pytest.approx(6 * 50 / 90.0)

    assert s1["requests"] == 137 + 3 + 2 + 1  # settle left out, cut short counted
    assert s1["success_rate"] == pytest.approx(137 / (137 + 5))  # cut short is neither
    assert s1["p50_ms"] == pytest.approx(np.percentile(step1, 50))
    assert s1["p95_ms"] == pytest.approx(np.percentile(step1, 95))
    assert s1["max_ms"] == pytest.approx(max(step1))  # failures are not in latency
    assert s1["ttft_p50_ms"] == pytest.approx(np.percentile(ttft1, 50))
    assert s1["ttft_p95_ms"] == pytest.approx(np.percentile(ttft1, 95))
    assert s1["tokens_per_s_request"] == pytest.approx(np.median(tps1))
    assert s1["req_per_s"] == pytest.approx(137 / 90.0)

    for key in ("p50_ms", "p95_ms", "max_ms", "avg_ms"):
        assert s2[key] == 4321.0
    assert s2["ttft_p95_ms"] == 321.0

    notes = "; ".join(a.steps[1].notes)
    assert "3 rejected (503)" in notes and "2 timeouts" in notes
    assert "settle: 1 requests left out" in notes and "1 cut short" in notes
    assert "first failures" in notes and "first failures" not in "; ".join(a.steps[2].notes)


def test_results_json_and_markdown_loop_over_the_same_metrics(make_run):
    recs = [record(0, 1, 1000.0 + i, ttft_ms=100.0, tps=30.0, start=T0 + 10 + 4 * i) for i in range(20)]
    recs += [record(1, 3, 2600.0 + i, ttft_ms=900.0, tps=20.0, start=T0 + 110 + 4 * i) for i in range(20)]
    recs += [record(1, 3, 10.0, outcome="invalid", error="invalid recipe JSON: no 'steps'")]
    path = make_run(recs, stage_rows([1, 3]), run={"label": "pi5", "slo": {"p95_ms": 2000, "min_success": 0.9}})
    report = write_report(path, plots=False)
    header = report.table_markdown.splitlines()[0]
    assert header == ("| Concurrent users | Users held | Requests | Completed | Success rate | n | Avg | p50 | p95 | Max | "
                      "TTFT p50 | TTFT p95 | Tokens/s (per request) | Tokens/s (total) | Req/s | Notes |")
    data = json.loads(_read(os.path.join(path, "results.json")))
    assert [m["key"] for m in data["metrics"]] == [m.key for m in STEP_METRICS]
    for m in STEP_METRICS:
        assert m.key in data["steps"][0]
    notes = data["steps"][1]["notes"]
    assert "1 invalid recipe JSON" in notes and any(n.startswith("p95 2.6× baseline") for n in notes)
    assert data["conclusion"]["failure_point_users"] == 3
    assert data["conclusion"]["largest_users_meeting_slo"] == 1
    md = _read(os.path.join(path, "results.md"))
    assert "Rate-limit the gateway at 1 concurrent request (the in-flight p95 measured at 1 user" in md
    assert "numpy.percentile" in md


def test_queueing_sentence_and_num_parallel_advice(make_run):
    recs = []
    for i in range(9):
        recs.append(record(0, 1, 2000.0, ttft_ms=200.0, tps=50.0, load_ms=2.0, prompt_eval_ms=100.0,
                           eval_ms=1890.0, total_ms=1995.0, queue_ms=3.0))
        recs.append(record(1, 10, 9000.0, ttft_ms=7000.0, tps=48.0, load_ms=2.0, prompt_eval_ms=100.0,
                           eval_ms=1890.0, total_ms=8995.0, queue_ms=7003.0))
    run = {"simulator": {"profile": "pi5", "num_parallel": 1, "max_queue": 512},
           "warmup": {"outcome": "ok", "e2e_ms": 7000.0, "load_ms": 6300.0, "error": ""}}
    report = write_report(make_run(recs, stage_rows([1, 10]), run=run), slo_p95_ms=5000, plots=False)
    md = report.markdown
    assert "at 10 users, 78 % of the wait is queue wait (waiting for a free OLLAMA_NUM_PARALLEL slot)" in md
    assert "Raise OLLAMA_NUM_PARALLEL (now 1)" in md
    assert "Cold start of 6.30 s" in md and "OLLAMA_KEEP_ALIVE" in md
    assert "embedded simulator" in md


def test_saturated_hardware_advises_smaller_model(make_run):
    recs = [record(0, 1, 2000.0, tps=40.0, tokens=80, start=T0 + 10 + i) for i in range(10)]
    recs += [record(1, 4, 8000.0, tps=10.0, tokens=80, start=T0 + 110 + i) for i in range(11)]
    report = write_report(make_run(recs, stage_rows([1, 4])), plots=False)
    assert "hardware is saturated" in report.markdown and "smaller model or a GPU" in report.markdown
    assert "the default objective for non-streamed replies" in report.markdown  # no TTFT: E2E p95 <= 10 s
