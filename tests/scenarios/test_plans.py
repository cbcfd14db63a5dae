import pytest

from ollama_locust.scenarios import plans


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("2m", 120), ("1m30s", 90), ("1h", 3600), ("0.5s", 0.5), (15, 15)])
def test_parse_duration(text, seconds):
    assert plans.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-3s", "m"])
def test_parse_duration_rejects(text):
    with pytest.raises(plans.PlanError):
        plans.parse_duration(text)


def test_parse_users():
    assert plans.parse_users("1, 3,5,10") == [1, 3, 5, 10]


@pytest.mark.parametrize("text", ["0,a", "0", "1,,3", "1.5", "-1", ""])
def test_parse_users_rejects_with_one_line(text):
    with pytest.raises(plans.PlanError) as error:
        plans.parse_users(text)
    assert "\n" not in str(error.value) and "1,3,5,10" in str(error.value)


def test_step_plan_and_lookup():
    stages = plans.step_plan([1, 2, 4], 10, settle_s=2)
    assert [s.users for s in stages] == [1, 2, 4]
    assert plans.total_duration(stages) == 30
    assert plans.stage_index_at(stages, 0) == 0
    assert plans.stage_index_at(stages, 9.99) == 0
    assert plans.stage_index_at(stages, 10) == 1
    assert plans.stage_index_at(stages, 29.9) == 2
    assert plans.stage_index_at(stages, 30) is None


def test_settle_must_be_shorter_than_step():
    with pytest.raises(plans.PlanError):
        plans.step_plan([1], 5, settle_s=5)


def test_burst_plan_alternates_base_and_spike():
    stages = plans.burst_plan(2, 10, period_s=30, burst_s=5, bursts=2)
    assert [(s.users, s.duration_s, s.kind) for s in stages] == [(2, 25, "hold"), (12, 5, "burst")] * 2


def test_ramp_plan_spawn_rates():
    stages = plans.ramp_plan([2, 6], 4)
    assert [s.spawn_rate for s in stages] == [0.5, 1.0]
