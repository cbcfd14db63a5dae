"""docs/reports.md documents every metric and time part the code defines (one table feeds both)."""

from __future__ import annotations

import os

from reports import METRICS, PERCENTILE_METHOD
from reports._steps import TIME_PARTS

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reports.md")


def test_every_metric_and_time_part_is_documented():
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    for m in METRICS:
        assert f"| {m.label} | `{m.key}` | {m.unit} | {m.how} |" in text, m.key
    for key, label, how in TIME_PARTS:
        assert f"| {label} | `{key}` | {how} |" in text, key
    assert f'method="{PERCENTILE_METHOD}"' in text
