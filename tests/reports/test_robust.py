"""The report is still written, with the gaps said, when the run folder is incomplete or damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ollama_locust.reports import ReportError, write_report
from ollama_locust.reports.cli import compare_main, report_main
from tests.reports.conftest import record, stage_rows
from tests.reports.conftest import read_text as _read


def _ok(stage, users, n, e2e=1000.0, **kw):
    return [record(stage, users, e2e + i, ttft_ms=100.0, tps=30.0, **kw) for i in range(n)]


def test_empty_step_and_all_failed_step(make_run):
    recs = _ok(0, 1, 4) + [record(2, 5, 50.0, outcome="rejected", error="server busy")] * 4
    path = make_run(recs, stage_rows([1, 3, 5]))
    report = write_report(path)
    rows = report.table_markdown.splitlines()[2:]
    assert rows[1].startswith("| 3 | n/a | 0 | 0 | – |") and "no requests" in rows[1]
    assert "all failed" in rows[2] and "4 rejected (503)" in rows[2] and "0.0 %" in rows[2]
    assert "Failure point:** 5 users" in report.markdown
    assert os.path.exists(os.path.join(path, "latency.png"))


def test_truncated_last_line_is_skipped_and_said(make_run):
    path = make_run(_ok(0, 1, 5), stage_rows([1]))
    with open(os.path.join(path, "requests.csv"), "a") as fh:
        fh.write("local-x,local,StudentUser,ollama-chat,m,0,1,False,17900000")  # killed mid-line
    report = write_report(path, plots=False)
    assert report.data["steps"][0]["requests"] == 5
    assert any("truncated line" in g for g in report.data["gaps"])
    assert "truncated line" in report.markdown


def test_openai_run_without_server_durations(make_run):
    path = make_run(_ok(0, 1, 3, api="openai"), stage_rows([1]), run={"api": "openai"})
    report = write_report(path)
    assert "n/a: the OpenAI-compatible API reports no server durations" in report.markdown
    assert not os.path.exists(os.path.join(path, "time_split.png"))
    assert report.data["steps"][0]["time_split_ms"] is None


def test_no_stages_csv_and_no_run_json(make_run):
    recs = [record(0, 1, 1000.0, tps=10.0, start=1000.0 + i) for i in range(5)]
    recs += [record(1, 3, 2000.0, tps=10.0, start=2000.0 + i) for i in range(5)]
    path = make_run(recs)  # requests.csv only
    report = write_report(path, plots=False)
    users = [s["users"] for s in report.data["steps"]]
    assert users == [1, 3]
    # duration estimated from the first start to the last end: 4 s + 1 s (last request) = 5 s
    assert report.data["steps"][0]["req_per_s"] == pytest.approx(5 / 5.0)
    gaps = " ".join(report.data["gaps"])
    assert "no usable stages.csv" in gaps and "no run.json" in gaps


def test_stage_without_end_time_uses_next_start_or_last_request(make_run):
    stages = stage_rows([1, 3])
    stages[1]["end_time"] = ""
    path = make_run(_ok(0, 1, 2) + _ok(1, 3, 2), stages)
    report = write_report(path, plots=False)
    assert any("no end time" in n for n in report.data["steps"][1]["notes"])
    assert report.data["steps"][1]["duration_s"] is not None


def test_interrupted_run_and_missing_workers_are_said(make_run):
    run = {"interrupted": True, "steps": [1, 3, 5], "missing_workers": ["w2"], "label": "x"}
    report = write_report(make_run(_ok(0, 1, 3), stage_rows([1]), run=run), plots=False)
    assert "interrupted" in report.markdown and "planned 1, 3, 5 users; ran 1" in report.markdown
    assert "Workers stopped reporting" in report.markdown and "w2" in report.markdown


def test_malformed_cells_and_bad_run_json(make_run):
    recs = _ok(0, 1, 4)
    recs[0]["e2e_ms"] = "garbage"
    path = make_run(recs, stage_rows([1]))
    with open(os.path.join(path, "run.json"), "w") as fh:
        fh.write("{not json")
    report = write_report(path, plots=False)
    gaps = " ".join(report.data["gaps"])
    assert "malformed numeric" in gaps and "run.json is not valid JSON" in gaps


def test_header_only_requests_csv(make_run):
    report = write_report(make_run([], stage_rows([1])), plots=False)
    assert "holds no requests" in report.markdown
    assert "no successful request" in report.markdown.lower() or "No step had a successful" in report.markdown


def test_no_run_in_folder_raises_report_error(tmp_path):
    with pytest.raises(ReportError, match="no run in"):
        write_report(str(tmp_path))
    with pytest.raises(ReportError, match="does not exist"):
        write_report(str(tmp_path / "nope"))


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ollama-locust report: no run in") and err.count("\n") == 1
    assert compare_main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ollama-locust compare: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        report_main([str(tmp_path), "--min-success", "7"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_unwritable_report(make_run, capsys):
    path = make_run(_ok(0, 1, 2), stage_rows([1]))
    os.mkdir(os.path.join(path, "results.md"))  # cannot be opened for writing, even by root
    assert report_main([path, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the report" in err and err.count("\n") == 1


def test_cli_through_the_dispatcher_prints_table(make_run):
    path = make_run(_ok(0, 1, 3), stage_rows([1]), run={"label": "a"})
    done = subprocess.run([sys.executable, "-m", "ollama_locust", "report", path, "--no-plots"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| Concurrent users |" in done.stdout and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "ollama_locust", "report", path + "-missing"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    data = json.loads(_read(os.path.join(path, "results.json")))
    assert data["label"] == "a"


def test_records_outside_any_shape_form_one_row(make_run):
    recs = [record(-1, 0, 1000.0 + i, tps=10.0, start=1000.0 + i) for i in range(4)]
    report = write_report(make_run(recs), plots=False)
    row = report.table_markdown.splitlines()[2]
    assert row.startswith("| ? | n/a | 4 |") and "no load shape" in row


def test_records_lost_to_a_write_error_are_said(make_run):
    """run.json's records_unwritten (a full disk): the first gap says how many records are missing."""
    path = make_run(_ok(0, 1, 5), stage_rows([1]), run={"requests": 9, "records_unwritten": 4,
                                                         "write_error": "requests.csv: No space left on device"})
    gaps = write_report(path, plots=False).data["gaps"]
    assert gaps[0].startswith("records incomplete: 4 of 9 requests could not be written to requests.csv "
                              "(requests.csv: No space left on device)"), gaps


def test_malformed_token_counts_are_said_once(make_run):
    recs = _ok(0, 1, 3) + _ok(0, 1, 2, bad_counts='eval_count="n/a"')
    gaps = write_report(make_run(recs, stage_rows([1])), plots=False).data["gaps"]
    assert [g for g in gaps if "not non-negative integers" in g] == [
        '2 requests reported token counts that are not non-negative integers (e.g. eval_count="n/a"): ignored, '
        "their output tokens were counted from the content chunks"]
