"""The LLM tab's numbers (scenarios.live_stats.LiveStats) on plain records: no network, no locust, no gevent."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ollama_locust import contract, options
from ollama_locust.scenarios.live_stats import NA, LiveStats, Reservoir
from ollama_locust.scenarios.webui import COLUMNS, fix_form, form_fields, order_form, table_rows, template_args


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def span(stage, users, start, end=None, settle=0.0):
    return SimpleNamespace(stage=stage, users=users, kind="hold", settle_s=settle, start_time=start, end_time=end)


def record(i: int, user_class: str = "StudentUser", outcome: str = contract.OK, stage: int = 0, settle=False,
           start: float = 1000.0, e2e: float | None = None, tokens: int = 20) -> dict:
    ok = outcome == contract.OK
    return {"user_class": user_class, "outcome": outcome, "stage": stage, "settle": settle,
            "start_time": start + i * 0.01, "ttft_ms": 10.0 + i if ok else None,
            "e2e_ms": 100.0 + 2 * i if e2e is None else e2e,
            "tokens_per_s": 50.0 + (i % 7) if ok else None, "output_tokens": tokens if ok else 0,
            "queue_wait_ms": float(i % 5) if ok else None, "load_ms": 1.0 if ok else None,
            "prompt_eval_ms": 5.0 if ok else None, "eval_ms": 80.0 + i if ok else None,
            "server_total_ms": 90.0 + i if ok else None}


def pct(values, q):
    return round(float(np.percentile(values, q)), 1)


def test_one_row_per_stage_kept_after_the_next_stage_begins_and_matching_numpy():
    clock = Clock()
    spans = [span(0, 4, 1000.0, 1010.0), span(1, 8, 1010.0)]
    live = LiveStats(lambda: spans, clock=clock)
    records = [record(i, "StudentUser" if i % 3 else "RecipeUser") for i in range(300)]
    records += [record(300 + i, "RecipeUser", outcome) for i, outcome in enumerate(contract.FAILURE_OUTCOMES)]
    later = [record(i, stage=1, start=1010.0) for i in range(50)]
    for r in records + later:
        live.add(r)
    clock.now = 1020.0
    snap = live.snapshot(running=True)
    assert [(s["stage"], s["users"]) for s in snap["stages"]] == [(0, 4), (1, 8)]  # the 4-user row stays
    first = snap["stages"][0]
    ok = [r for r in records if r["outcome"] == contract.OK]
    assert first["requests"] == len(records) and first["failed"] == len(contract.FAILURE_OUTCOMES)
    assert first["success"] == round(100 * len(ok) / len(records), 1)
    for key, column, q in (("ttftp50", "ttft_ms", 50), ("ttftp95", "ttft_ms", 95), ("e2ep95", "e2e_ms", 95),
                           ("tpsrequest", "tokens_per_s", 50), ("queuep50", "queue_wait_ms", 50)):
        assert first[key] == pct([r[column] for r in ok], q), key
    assert first["split"]["eval_ms"] == pct([r["eval_ms"] for r in ok], 50)
    assert first["split"]["outside_ms"] == pct([r["e2e_ms"] - r["server_total_ms"] for r in ok], 50)
    assert first["failedby"] == {"RecipeUser": {o: 1 for o in contract.FAILURE_OUTCOMES}}
    classes = {c["userclass"]: c for c in first["classes"]}
    assert set(classes) == {"RecipeUser", "StudentUser"}
    recipe = [r for r in records if r["user_class"] == "RecipeUser"]
    assert classes["RecipeUser"]["requests"] == len(recipe)
    assert classes["RecipeUser"]["ttftp95"] == pct([r["ttft_ms"] for r in recipe if r["outcome"] == contract.OK], 95)
    # throughput inside the stage's window: requests by completion, tokens by arrival
    assert first["window_s"] == 10.0 and first["rps"] == round(len(ok) / 10.0, 1)  # successful completions
    assert first["tpstotal"] == round(len(ok) * 20 / 10.0, 1)
    assert snap["total"]["requests"] == len(records) + len(later)
    rows = table_rows(snap)
    assert [r["stage"] for r in rows] == [0, 1, "all"] and set(rows[0]) == {k for k, _, _ in COLUMNS}


def test_tokens_and_completions_are_split_at_the_stage_boundary():
    spans = [span(0, 1, 1000.0, 1010.0), span(1, 2, 1010.0, 1020.0)]
    live = LiveStats(lambda: spans, clock=Clock(1030.0))
    # first token at 1008 s, last byte at 1012 s: 40 tokens, half in each stage; it completes in stage 1
    live.add({**record(0, start=1007.0, e2e=5000.0, tokens=40), "ttft_ms": 1000.0})
    stage0, stage1 = live.snapshot(running=False)["stages"]
    assert stage0["tpstotal"] == 2.0 and stage1["tpstotal"] == 2.0  # 20 tokens / 10 s each
    assert stage0["rps"] == 0.0 and stage1["rps"] == 0.1 and stage0["requests"] == 1 and stage1["requests"] == 0


def test_settle_records_count_for_the_test_not_the_stage_and_nothing_measured_says_so():
    spans = [span(0, 1, 1000.0, 1020.0, settle=5.0)]
    live = LiveStats(lambda: spans, clock=Clock())
    live.add(record(0, settle=True))
    live.add(record(1, outcome=contract.TIMEOUT))
    snap = live.snapshot(running=False)
    stage, total = snap["stages"][0], snap["total"]
    assert stage["requests"] == 1 and stage["failed"] == 1 and stage["ttftp50"] == NA and stage["split"] == NA
    assert stage["window_s"] == 15.0 and stage["success"] == 0.0
    assert total["requests"] == 2 and total["ttftp50"] == 10.0


def test_reset_empties_the_tab_and_ignores_older_records():
    clock = Clock()
    spans = [span(0, 2, 1000.0, 1010.0), span(1, 4, 1010.0)]
    live = LiveStats(lambda: spans, clock=clock)
    for i in range(20):
        live.add(record(i, stage=0))
    clock.now = 1015.0
    live.reset()
    assert live.snapshot()["total"]["requests"] == 0
    live.add(record(0, stage=1, start=1012.0))  # started before the reset: ignored
    live.add(record(0, stage=1, start=1016.0))
    clock.now = 1025.0
    snap = live.snapshot(running=True)
    assert [s["stage"] for s in snap["stages"]] == [1]  # stage 0 ended before the reset
    assert snap["stages"][0]["requests"] == 1 and snap["stages"][0]["window_s"] == 10.0
    assert snap["total"]["requests"] == 1


def test_users_held_inflight_and_chart_points():
    clock = Clock()
    spans = [span(0, 4, 1000.0)]
    live = LiveStats(lambda: spans, clock=clock)
    for users, now in ((2, 1000.0), (4, 1002.0), (4, 1004.0), (4, 1006.0)):
        clock.now = now
        live.sample(users, 0)
    # two requests in flight over [1000, 1004]
    live.add(record(0, start=1000.0, e2e=4000.0))
    live.add({**record(0, start=1000.0, e2e=4000.0), "user_class": "RecipeUser"})
    clock.now = 1008.0
    point = live.sample(4, 0)
    assert point["users"] == 4 and point["ttftp50"] == 10.0
    snap = live.snapshot()
    assert snap["stages"][0]["held"] == round((2 * 2 + 4 * 6) / 8, 1)
    inflight = {p["t"]: p["inflight"] for p in snap["series"]}
    assert inflight[1002.0] == 2.0 and inflight[1004.0] == 2.0 and inflight[1006.0] == 0.0


def test_samples_are_bounded():
    reservoir = Reservoir(cap=100)
    for value in range(10_000):
        reservoir.add(float(value))
    assert len(reservoir.values) == 100 and reservoir.seen == 10_000
    assert 2_000 < np.median(reservoir.values) < 8_000  # a uniform sample, not the first 100
    live = LiveStats(lambda: [], cap=50, clock=Clock())
    for i in range(1000):
        live.add(record(i, stage=i // 100))
    assert max(len(r.values) for s in live.stages.values() for g in s.groups.values() for r in g.samples.values()) == 50
    assert len(live.inflight) <= 1800 + 60


def test_form_fields_grouped_and_labelled_from_the_option_table():
    fields = form_fields()["fields"]
    groups = [g for g, _ in options.GROUPS]
    assert [f["group"] for f in fields] == sorted((f["group"] for f in fields), key=groups.index)
    assert fields[0]["name"] == "model" and all(f["label"] and f["help"] for f in fields)
    assert {f["name"] for f in fields} == {o.dest for o in options.ALL_OPTIONS if o.web_ui}
    extra = {name: {"default_value": 1} for name in sorted(f["name"] for f in fields)}
    assert list(order_form(extra)) == [f["name"] for f in fields]
    # Locust's page posts slo_p95 as "slo_p9_5" (camel case and back): put the table's name back
    from werkzeug.datastructures import MultiDict

    assert dict(fix_form(MultiDict([("slo_p9_5", "900"), ("host", "h")]))) == {"slo_p95": "900", "host": "h"}
    assert fix_form(MultiDict([("host", "h")])) is None


def test_extension_arguments_and_no_heavy_imports():
    args = template_args()
    [tab] = args["extended_tabs"]
    [table] = args["extended_tables"]
    assert table["key"] == tab["key"] and [c["key"] for c in table["structure"]] == [k for k, _, _ in COLUMNS]
    assert all("_" not in key for key, _, _ in COLUMNS)  # Locust's UI camel-cases keys
    assert {link["href"] for link in args["extended_csv_files"]} == {
        "./llm/requests.csv", "./llm/report.md", "./llm/report.html", "./llm/"}
    code = ("import sys, ollama_locust.scenarios.webui, ollama_locust.scenarios.live_stats; "
            "print(sorted(m for m in ('gevent', 'locust', 'flask') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() == "[]"


def test_html_report_embeds_the_plots(tmp_path):
    pytest.importorskip("markdown_it")
    from ollama_locust.scenarios.html_report import render_html

    (tmp_path / "latency.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    markdown = "# Results\n\n| Concurrent users | p95 |\n|---|---|\n| 4 | 120 |\n\n**Conclusion**: fine <b>x</b>\n\n![Latency](latency.png)\n"
    page = render_html(SimpleNamespace(run_dir=str(tmp_path), markdown=markdown))
    assert "<table>" in page and "<td>4</td>" in page and "data:image/png;base64," in page
    assert "<b>x</b>" not in page  # raw HTML in the markdown is escaped
