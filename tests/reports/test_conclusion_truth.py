"""The conclusion says only what the data shows (issue 13): sample size, held users, the default objective,
stopped-on-failure, the gateway limit, invalid replies, the drain."""

from __future__ import annotations

from ollama_locust import contract
from ollama_locust.reports import write_report
from tests.reports.conftest import T0, record, stage_rows


def _steady(stage, users, n, e2e_ms, *, ttft_ms=100.0, gap=4.0, **kw):
    """n requests of one step, one every ``gap`` s (so ``users`` overlap only as e2e/gap says)."""
    return [record(stage, users, e2e_ms, ttft_ms=ttft_ms, tps=20.0, start=T0 + stage * 100 + 1 + i * gap, **kw)
            for i in range(n)]


def test_small_samples_are_marked_and_not_judged(make_run):
    recs = _steady(0, 1, 4, 1000.0) + _steady(1, 4, 5, 9000.0, ttft_ms=8000.0, gap=2.0)
    report = write_report(make_run(recs, stage_rows([1, 4])), plots=False)
    md = report.markdown
    assert "* a p95 from fewer than 20 requests" in md
    row = next(line for line in md.splitlines() if line.startswith("| 4 |"))
    assert "9.00 s*" in row and "not enough requests to judge p95 (n = 5; hold steps longer: --step-time 60s)" in row
    assert "× baseline" not in row  # no ratio on a marked figure
    assert "too few requests to compare" in md
    assert report.data["conclusion"]["failure_point_users"] is None  # TTFT 8 s, but n = 5 judges nothing
    assert "its latency was not judged: n = 5" in md


def test_default_objective_judges_ttft_and_says_how_to_change_it(make_run):
    recs = _steady(0, 1, 20, 1000.0) + _steady(1, 4, 20, 5000.0, ttft_ms=3000.0)
    report = write_report(make_run(recs, stage_rows([1, 4])), plots=False)
    conclusion = report.data["conclusion"]
    assert conclusion["failure_point_users"] == 4 and conclusion["largest_users_meeting_slo"] == 1
    text = "\n".join(conclusion["text"])
    assert "TTFT p95 3.00 s > SLO 2.00 s" in text
    assert "the default objective for streamed replies, --slo-ttft-p95 MS or --slo-p95 MS change it" in text
    assert report.data["slo"]["default_objective"] is True
    off = write_report(make_run(recs, stage_rows([1, 4])), slo_ttft_p95_ms=0, plots=False)
    assert "judged on success rate only" in off.markdown


def test_a_step_that_did_not_hold_its_users_is_left_out_of_the_verdicts(make_run):
    recs = _steady(0, 1, 20, 1000.0) + _steady(1, 8, 20, 20000.0, ttft_ms=19000.0)
    stages = stage_rows([1, 8])
    stages[0].update(users_mean=1.0, users_max=1, reached_s=0.01)
    stages[1].update(users_mean=3.5, users_max=6, reached_s="")
    report = write_report(make_run(recs, stages), plots=False)
    row = next(line for line in report.markdown.splitlines() if line.startswith("| 8 |"))
    assert row.startswith("| 8 | 3.5 |")
    assert "8 users never all running (held 3.5 on average, at most 6): left out of the verdicts" in row
    assert report.data["conclusion"]["failure_point_users"] is None
    assert "not judged: 8 users" in report.markdown


def test_stopped_on_failure_only_when_the_option_was_given(make_run):
    recs = _steady(0, 1, 20, 1000.0) + _steady(1, 4, 20, 1000.0, outcome="rejected")
    stopped = {"stage": 1, "reason": "success rate 33.3 % < 95.0 %"}
    given = write_report(make_run(recs, stage_rows([1, 4]), run={
        "stopped_on_failure": stopped, "options": {"stop_on_failure": True}}), plots=False)
    assert "**Stepping stopped on failure** at 4 users (--stop-on-failure)" in given.markdown
    assert "over all of the step's requests (the table): success rate 0.0 % < 95.0 %" in given.markdown
    not_given = write_report(make_run(recs, stage_rows([1, 4]), run={
        "stopped_on_failure": stopped, "options": {"stop_on_failure": False}}), plots=False)
    assert "Stepping stopped" not in not_given.markdown


def test_gateway_limit_comes_from_the_measured_in_flight_count(make_run):
    # 8 users that think a lot: at most 2 requests in flight at 8 users; 16 users fail
    recs = _steady(0, 1, 20, 1000.0)
    recs += [record(1, 8, 1500.0, ttft_ms=100.0, tps=20.0, start=T0 + 101 + i * 1.0) for i in range(40)]
    recs += _steady(2, 16, 20, 1000.0, outcome="rejected")
    report = write_report(make_run(recs, stage_rows([1, 8, 16])), plots=False)
    recs_text = " ".join(report.data["conclusion"]["recommendations"])
    assert "Rate-limit the gateway at 2 concurrent requests (the in-flight p95 measured at 8 users" in recs_text


def test_all_invalid_replies_keep_their_timing_and_are_explained(make_run):
    recs = _steady(0, 1, 20, 1000.0)
    recs += [record(1, 2, 30000.0 + i, ttft_ms=200.0, outcome="invalid", done_reason="length" if i < 13 else "stop",
                    error="invalid recipe JSON: no 'steps'", start=T0 + 101 + i * 3) for i in range(22)]
    report = write_report(make_run(recs, stage_rows([1, 2]), run={"options": {"num_predict": 256}}), plots=False)
    md = report.markdown
    assert ("**Invalid replies at 2 users:** 22 of 22 replies were invalid (invalid recipe JSON: no 'steps'): "
            "13 cut at --num-predict 256.") in md
    assert "Their timing (all replies): p50 30.0 s" in md and "n = 22" in md
    row = next(line for line in md.splitlines() if line.startswith("| 2 |"))
    assert "| – |" in row  # the latency columns stay over successful requests


def test_drain_line_and_restamp(make_run):
    recs = _steady(0, 1, 20, 1000.0)
    recs += [record(0, 1, 1000.0, ttft_ms=100.0, start=T0 + 100.5 + i) for i in range(3)]  # after the end
    recs += [record(0, 1, 500.0, outcome=contract.CUT_SHORT, start=T0 + 104)]
    report = write_report(make_run(recs, stage_rows([1])), plots=False)
    assert report.data["drain"] == {"requests": 4, "outcomes": {"ok": 3, "cut_short": 1}}
    assert "Drain: 4 requests started after the last step's end" in report.markdown
    assert report.data["steps"][0]["requests"] == 20
