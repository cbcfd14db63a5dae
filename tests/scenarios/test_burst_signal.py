"""When the master's burst signal goes out (--shape burst): once the burst stage's users run, or half-way."""

import pytest

from ollama_locust.scenarios.stepping import burst_due
from ollama_locust.scenarios.timeline import StageTimeline


@pytest.fixture
def timeline():
    line = StageTimeline()
    line.sample(0.0, 2)
    line.begin(2, 0.0, "hold", 0.0)  # hold 2 users, then a 4 s burst to 6
    return line


def test_due_once_the_burst_stage_users_run(timeline):
    assert not burst_due(timeline.current, 6.0, 1.0)  # a hold stage never fires
    timeline.begin(6, 0.0, "burst", 6.0)
    assert not burst_due(timeline.current, 4.0, 6.1)  # its users are not running yet
    timeline.sample(6.3, 6)
    assert burst_due(timeline.current, 4.0, 6.3) and timeline.current.reached_s == pytest.approx(0.3)
    timeline.begin(2, 0.0, "hold", 10.0)
    timeline.sample(10.5, 2)
    timeline.sample(15.9, 6)  # a user count already there when the next burst begins: due at once
    timeline.begin(6, 0.0, "burst", 16.0)
    assert burst_due(timeline.current, 4.0, 16.0)


def test_due_half_way_when_the_users_never_all_run(timeline):
    timeline.begin(6, 0.0, "burst", 6.0)
    timeline.sample(6.5, 3)
    assert not burst_due(timeline.current, 4.0, 7.9)
    assert burst_due(timeline.current, 4.0, 8.0)  # half of the 4 s burst: fire with whoever runs


def test_never_after_the_stage_ended(timeline):
    timeline.begin(6, 0.0, "burst", 6.0)
    timeline.finish(10.0)
    assert not burst_due(timeline.current, 4.0, 10.0) and not burst_due(None, 4.0, 10.0)
