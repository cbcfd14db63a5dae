"""The LLM tab's numbers (scenarios.webui.LiveStats) on plain records: no network, no locust, no gevent."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from ollama_locust import contract
from ollama_locust.scenarios.webui import COLUMNS, NA, LiveStats, Reservoir, template_args


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(i: int, user_class: str = "StudentUser", outcome: str = contract.OK, stage: int = 0, settle=False,
           start: float = 1000.0) -> dict:
    ok = outcome == contract.OK
    return {"user_class": user_class, "outcome": outcome, "stage": stage, "settle": settle,
            "start_time": start + i * 0.01, "ttft_ms": 10.0 + i if ok else None, "e2e_ms": 100.0 + 2 * i,
            "tokens_per_s": 50.0 + (i % 7) if ok else None, "output_tokens": 20 if ok else 0}


def by(rows, scope, user_class):
    [row] = [r for r in rows if r["scope"].startswith(scope) and r["userclass"] == user_class]
    return row


def test_rows_per_class_and_total_match_numpy():
    clock = Clock()
    live = LiveStats(clock=clock)
    records = [record(i, "StudentUser" if i % 3 else "RecipeUser") for i in range(300)]
    records += [record(300 + i, "RecipeUser", outcome) for i, outcome in enumerate(contract.FAILURE_OUTCOMES)]
    for r in records:
        live.add(r)
    clock.now = 1010.0
    span = SimpleNamespace(stage=0, users=3, kind="hold", settle_s=0.0, start_time=1000.0, end_time=None)
    rows = live.snapshot(span, running=True)["rows"]
    assert [r["scope"] for r in rows][:3] == ["stage 0 (3 users)"] * 3
    for scope in ("stage 0", "whole run"):
        for name, subset in (("Total", records), ("RecipeUser", [r for r in records if r["user_class"] == "RecipeUser"])):
            row = by(rows, scope, name)
            ok = [r for r in subset if r["outcome"] == contract.OK]
            assert row["requests"] == len(subset) and row["ok"] == len(ok)
            for key, column, q in (("ttftp50", "ttft_ms", 50), ("ttftp95", "ttft_ms", 95), ("e2ep95", "e2e_ms", 95),
                                   ("tpsrequest", "tokens_per_s", 50)):
                assert row[key] == round(float(np.percentile([r[column] for r in ok], q)), 1), (scope, name, key)
    total = by(rows, "stage 0", "Total")
    assert all(total[o.replace("_", "")] == 1 for o in contract.FAILURE_OUTCOMES)
    assert total["tpstotal"] == round(300 * 20 / 10.0, 1)  # ok tokens over the stage's 10 s so far


def test_settle_records_count_for_the_run_not_the_stage_and_nothing_measured_says_so():
    live = LiveStats(clock=Clock())
    live.add(record(0, settle=True))
    live.add(record(1, outcome=contract.TIMEOUT))
    span = SimpleNamespace(stage=0, users=1, kind="step", settle_s=5.0, start_time=1000.0, end_time=1020.0)
    rows = live.snapshot(span, running=False)["rows"]
    stage, run = by(rows, "stage 0", "Total"), by(rows, "whole run", "Total")
    assert stage["requests"] == 1 and stage["timeout"] == 1 and stage["ttftp50"] == NA
    assert run["requests"] == 2 and run["ttftp50"] == 10.0


def test_samples_are_bounded():
    reservoir = Reservoir(cap=100)
    for value in range(10_000):
        reservoir.add(float(value))
    assert len(reservoir.values) == 100 and reservoir.seen == 10_000
    assert 2_000 < np.median(reservoir.values) < 8_000  # a uniform sample, not the first 100
    live = LiveStats(cap=50, clock=Clock())
    for i in range(1000):
        live.add(record(i, stage=i // 100))
    assert len(live.stages) <= 2  # only the current and the previous stage keep samples
    assert max(len(g.ttft.values) for g in live.run.groups.values()) == 50


def test_chart_points_roll_over_the_window():
    clock = Clock()
    live = LiveStats(clock=clock)
    for i in range(10):
        live.add(record(i))
    point = live.tick(users=2, stage=0)
    assert point["requests"] == 10 and point["ttftp50"] == 14.5 and point["users"] == 2
    clock.now += 60
    point = live.tick()
    assert point["requests"] == 0 and point["ttftp50"] is None and len(live.series) == 2


def test_extension_arguments_and_no_heavy_imports():
    args = template_args()
    [tab] = args["extended_tabs"]
    [table] = args["extended_tables"]
    assert table["key"] == tab["key"] and [c["key"] for c in table["structure"]] == [k for k, _ in COLUMNS]
    assert all("_" not in key for key, _ in COLUMNS)  # Locust's UI camel-cases keys
    assert {link["href"] for link in args["extended_csv_files"]} == {"./llm/requests.csv", "./llm/report.md", "./llm/"}
    code = "import sys, scenarios.webui; print(sorted(m for m in ('gevent', 'locust', 'flask') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() == "[]"
