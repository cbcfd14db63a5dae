"""compare on a NUM_PARALLEL=1 vs 4 shaped pair of hand-made runs."""

from __future__ import annotations

import pytest

from ollama_locust.reports import ReportError, compare_runs
from ollama_locust.reports.cli import compare_main
from tests.reports.conftest import T0, record, stage_rows

USERS = [1, 2, 4]
WINDOW = 100.0


def _run(make_run, label, num_parallel, name):
    records = []
    for stage, users in enumerate(USERS):
        busy = min(users, num_parallel)
        per_request_s = 2.0 * (1 + 0.2 * (busy - 1))  # slots share the batch
        latency_s = per_request_s * users / busy  # queueing behind the slots
        throughput = busy / per_request_s  # requests per second
        n = int(round(throughput * WINDOW))
        for i in range(n):
            records.append(record(stage, users, latency_s * 1000.0, ttft_ms=(latency_s - per_request_s) * 1000 + 100,
                                  tps=100 / per_request_s, tokens=100, start=T0 + stage * WINDOW + i * WINDOW / n))
    run = {"label": label, "simulator": {"profile": "cpu", "num_parallel": num_parallel, "max_queue": 512}}
    return make_run(records, stage_rows(USERS, duration=WINDOW), run=run, name=name)


def test_compare_shows_the_throughput_gain(make_run, tmp_path):
    one = _run(make_run, "NUM_PARALLEL=1", 1, "np1")
    four = _run(make_run, "NUM_PARALLEL=4", 4, "np4")
    out = tmp_path / "cmp.md"
    text = compare_runs([one, four], out=str(out))
    assert out.read_text() == text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Concurrent users"))
    assert "Req/s NUM_PARALLEL=1" in header and "Req/s NUM_PARALLEL=4" in header
    cols = [c.strip() for c in header.strip("|").split("|")]
    row4 = next(line for line in lines if line.startswith("| 4 |"))
    cells = [c.strip() for c in row4.strip("|").split("|")]
    req = cells[cols.index("Req/s NUM_PARALLEL=4")]
    # Completions inside the 100 s window: NP=1 48 (the first ends 8 s in), NP=4 122 (4 / 3.2 s, the first
    # 3.2 s in) -> +154 %
    assert cells[cols.index("Req/s NUM_PARALLEL=1")] == "0.48"
    assert req == "1.22 (+154 %)"
    p95 = cells[cols.index("p95 NUM_PARALLEL=4")]
    assert p95.startswith("3.20 s (−60 %)")  # 8 s behind one slot -> 3.2 s with four
    row1 = next(line for line in lines if line.startswith("| 1 |"))
    assert "(+0 %)" in row1
    assert "num_parallel 4" in text


def test_compare_marks_steps_a_run_did_not_reach(make_run):
    one = _run(make_run, "a", 1, "a")
    short = make_run([record(0, 1, 1000.0, tps=10.0)], stage_rows([1]), run={"label": "b"}, name="b")
    text = compare_runs([one, short])
    row = next(line for line in text.splitlines() if line.startswith("| 4 |"))
    assert "not run" in row


def test_compare_same_labels_are_told_apart(make_run, capsys):
    a = make_run([record(0, 1, 1000.0)], stage_rows([1]), run={"label": "x"}, name="first")
    b = make_run([record(0, 1, 2000.0)], stage_rows([1]), run={"label": "x"}, name="second")
    assert compare_main([a, b]) == 0
    out = capsys.readouterr().out
    assert "x (first)" in out and "x (second)" in out and "(+100 %)" in out


def test_compare_errors(tmp_path):
    with pytest.raises(ReportError):
        compare_runs([str(tmp_path)])
