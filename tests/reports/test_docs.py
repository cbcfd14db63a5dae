"""docs/reports.md documents every metric and time part the code defines (one table feeds both)."""

from __future__ import annotations

import os

from ollama_locust.reports import STEP_METRICS, PERCENTILE_METHOD
from ollama_locust.reports._steps import TIME_PARTS

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reports.md")


def test_every_metric_and_time_part_is_documented():
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    from ollama_locust.reports._step_metrics import RATE_METRICS
    from ollama_locust.reports._steps import GOODPUT_SHARE, GROWTH_MS

    for m in STEP_METRICS + RATE_METRICS:
        assert f"| {m.label} | `{m.key}` | {m.unit} | {m.how} |" in text, m.key
    assert f"`GROWTH_MS` = {GROWTH_MS} ms" in text and f"`GOODPUT_SHARE` = {GOODPUT_SHARE}" in text
    for key, label, how in TIME_PARTS:
        assert f"| {label} | `{key}` | {how} |" in text, key
    assert f'method="{PERCENTILE_METHOD}"' in text


def test_client_split_and_concurrency_thresholds_are_documented():
    from ollama_locust.reports import _concurrency
    from ollama_locust.reports._steps import CLIENT_SPLIT

    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    for key, label, how in CLIENT_SPLIT:
        assert f"| {label} | `{key}` | {how} |" in text, key
    for name in ("MIN_OK_REQUESTS", "BASELINE_MAX_AHEAD", "MIN_AHEAD", "WAIT_SHARE", "SPEED_KEPT",
                 "ONE_AT_A_TIME"):
        value = getattr(_concurrency, name)
        assert f"`{name}` = {value}" in text or f"`{name}` ({value})" in text, name
