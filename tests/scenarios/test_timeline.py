"""The stage timeline's held-user figures (users_mean, users_max, reached_s) from plain samples."""

import csv

import pytest

from ollama_locust import contract
from ollama_locust.scenarios.timeline import StageTimeline


def test_time_weighted_mean_max_and_reached(tmp_path):
    timeline = StageTimeline(str(tmp_path / contract.STAGES_FILE))
    timeline.begin(4, 0.0, "step", 100.0)  # 0 running at the start
    timeline.sample(101.0, 2)  # 0 users for 1 s
    timeline.sample(102.0, 4)  # 2 users for 1 s, then 4 (reached 2 s in)
    timeline.sample(104.0, 4)
    timeline.begin(2, 0.0, "step", 106.0)  # 4 users for 4 s
    first = timeline.spans[0]
    assert first.users_mean == pytest.approx((0 * 1 + 2 * 1 + 4 * 4) / 6)
    assert first.users_max == 4 and first.reached_s == pytest.approx(2.0)
    second = timeline.spans[1]
    assert second.users_before == 4 and second.reached_s is None  # going down: not yet at 2
    timeline.sample(106.5, 2)
    timeline.finish(108.0)
    assert second.reached_s == pytest.approx(0.5)
    assert second.users_mean == pytest.approx((4 * 0.5 + 2 * 1.5) / 2) and second.users_max == 4
    rows = list(csv.DictReader(open(tmp_path / contract.STAGES_FILE)))
    assert [r["users_mean"] for r in rows] == ["3.000", "2.500"]
    assert [r["users_max"] for r in rows] == ["4", "4"] and [r["reached_s"] for r in rows] == ["2.000", "0.500"]


def test_never_reached_and_already_there():
    timeline = StageTimeline()
    timeline.begin(8, 0.0, "step", 0.0)
    timeline.sample(1.0, 5)
    timeline.begin(5, 0.0, "step", 2.0)  # 5 running when it begins: reached at once
    assert timeline.spans[0].reached_s is None and timeline.spans[0].users_max == 5
    assert timeline.spans[1].reached_s == 0.0
    timeline.finish(3.0)
    assert timeline.spans[1].users_mean == pytest.approx(5.0)


def test_samples_outside_a_stage_are_ignored():
    timeline = StageTimeline()
    timeline.sample(0.5, 3)  # before the first stage: only remembered as the running count
    timeline.begin(3, 0.0, "step", 1.0)
    assert timeline.spans[0].reached_s == 0.0
    timeline.finish(2.0)
    timeline.sample(3.0, 0)  # the drain: no stage
    assert timeline.spans[0].users_mean == pytest.approx(3.0) and timeline.spans[0].end_time == 2.0
