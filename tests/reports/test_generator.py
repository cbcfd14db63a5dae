"""A step in which the load generator could not keep up is marked and left out of the verdicts (issue 17)."""

from __future__ import annotations

import csv
from pathlib import Path

from ollama_locust import contract
from ollama_locust.reports import analyse, write_report
from tests.reports.conftest import T0, record, stage_rows


def _generator_csv(path, rows):
    with open(path / contract.GENERATOR_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=contract.GENERATOR_COLUMN_NAMES)
        writer.writeheader()
        writer.writerows(rows)


def _second(t, cpu, lag, worker="vm-1"):
    return {"worker": worker, "time": t, "interval_s": 1.0, "cpu": cpu, "lag_p99_ms": lag, "lag_max_ms": lag,
            "connections": 4, "users": 1}


def test_a_saturated_step_is_marked_and_not_judged(make_run):
    records = [record(s, u, e2e, start=T0 + s * 100 + 5 + i)
               for s, u, e2e in ((0, 1, 1000.0), (1, 2, 1100.0), (2, 4, 9000.0)) for i in range(25)]
    path = make_run(records, stages=stage_rows([1, 2, 4]), run={"slo": {"p95_ms": 5000, "min_success": 0.95}})
    quiet = [_second(T0 + t, 0.3, 2.0) for t in range(1, 200)]
    busy = [_second(T0 + t, 0.98, 60.0) for t in range(201, 300)]
    _generator_csv(Path(path), quiet + busy)
    analysis = analyse(str(path))
    flagged = {s.users: bool(s.generator and s.generator["reasons"]) for s in analysis.steps}
    assert flagged == {1: False, 2: False, 4: True}
    assert analysis.verdicts[2] == ""  # the 9 s p95 is the generator's lateness as much as the server's
    report = write_report(str(path), plots=False)
    row = next(line for line in report.table_markdown.splitlines() if line.startswith("| 4 |"))
    assert "the load generator was saturated" in row and "fails SLO" not in row
    assert "**The load generator could not keep up** at 4 users" in report.markdown
    assert "--workers N" in report.markdown


def test_without_generator_csv_nothing_is_judged(make_run):
    path = make_run([record(0, 1, 1000.0, start=T0 + 5 + i) for i in range(5)], stages=stage_rows([1]))
    analysis = analyse(str(path))
    assert analysis.steps[0].generator is None
    assert "could not keep up" not in write_report(str(path), plots=False).markdown
