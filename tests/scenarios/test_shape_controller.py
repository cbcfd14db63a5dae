"""The step shape's decisions with a fake clock: stages, the timeline, stop-on-failure, the drain."""

from ollama_locust import contract

from ollama_locust.scenarios import plans
from ollama_locust.scenarios.record_sink import RecordSink
from ollama_locust.scenarios.stepping import ALL_AT_ONCE, RECORD_GRACE_S, ShapeController
from ollama_locust.scenarios.timeline import StageTimeline


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def make(stages, users=lambda: 0, **kw):
    clock = Clock()
    timeline = StageTimeline()
    sink = RecordSink(None, timeline)
    controller = ShapeController(stages, timeline, sink.tallies, user_count=users, clock=clock, **kw)
    return controller, clock, timeline, sink


def test_steps_then_drain_then_end():
    running = {"users": 3}
    controller, clock, timeline, _ = make(plans.step_plan([1, 3], 10), users=lambda: running["users"], drain_timeout_s=5)
    assert controller.tick() == (1, ALL_AT_ONCE)
    clock.now += 9.9
    assert controller.tick() == (1, ALL_AT_ONCE)
    clock.now += 0.2
    assert controller.tick() == (3, ALL_AT_ONCE)
    assert [(s.stage, s.users, s.start_time) for s in timeline.spans] == [(0, 1, 1000.0), (1, 3, 1010.1)]
    assert timeline.spans[0].end_time == 1010.1
    clock.now = 1020.0
    assert controller.tick() == (0, ALL_AT_ONCE)  # drain: no new requests, in-flight ones finish
    assert controller.finished and timeline.spans[1].end_time == 1020.0
    clock.now += 1
    assert controller.tick() == (0, ALL_AT_ONCE)  # users still finishing
    running["users"] = 0
    clock.now += 1
    assert controller.tick() == (0, ALL_AT_ONCE)  # grace for the last records to arrive
    clock.now += RECORD_GRACE_S
    assert controller.tick() is None


def test_drain_ends_at_its_timeout_even_if_users_hang():
    controller, clock, _, _ = make(plans.step_plan([2], 5), users=lambda: 2, drain_timeout_s=3)
    controller.tick()
    clock.now += 5
    controller.tick()
    clock.now += 3
    controller.tick()
    clock.now += RECORD_GRACE_S
    assert controller.tick() is None


def test_stop_on_failure_stops_after_the_failing_step():
    controller, clock, timeline, sink = make(plans.step_plan([1, 2, 4], 10), stop_on_failure=True, min_success=0.9)
    controller.tick()
    clock.now += 10
    controller.tick()  # stage 1 begins
    for i in range(10):
        outcome = contract.OK if i < 5 else contract.REJECTED
        sink.add({"start_time": clock.now + 1, "outcome": outcome, "e2e_ms": 100.0})
    clock.now += 10
    assert controller.tick() == (0, ALL_AT_ONCE)
    assert controller.failed_stage == 1 and "success rate 50.0 % < 90.0 %" in controller.failure_reason
    assert len(timeline.spans) == 2


def test_slo_p95_failure_without_stop_is_noted_but_stepping_goes_on():
    controller, clock, timeline, sink = make(plans.step_plan([1, 2], 10), slo_p95_ms=500)
    controller.tick()
    sink.add({"start_time": clock.now + 1, "outcome": contract.OK, "e2e_ms": 900.0})
    clock.now += 10
    assert controller.tick() == (2, ALL_AT_ONCE)
    assert controller.failed_stage == 0 and "p95" in controller.failure_reason


def test_common_options_mode_holds_users_until_run_time():
    controller, clock, timeline, _ = make(None, common_target=lambda: (5, 2), run_time_s=30)
    assert controller.tick() == (5, 2)
    clock.now += 29
    assert controller.tick() == (5, 2)
    clock.now += 1
    assert controller.tick() == (0, ALL_AT_ONCE)
    assert [(s.users, s.kind) for s in timeline.spans] == [(5, "hold")]


def test_common_options_mode_an_edit_of_the_user_count_starts_a_stage():
    """Locust's "Edit" of a running test changes -u/-r: the new count runs, in a stage of its own."""
    target = {"now": (4, 2.0)}
    controller, clock, timeline, _ = make(None, common_target=lambda: target["now"])
    assert controller.tick() == (4, 2.0)
    clock.now += 5
    target["now"] = (4, 10.0)  # only the spawn rate: the same stage
    assert controller.tick() == (4, 10.0)
    assert len(timeline.spans) == 1
    target["now"] = (8, 10.0)
    assert controller.tick() == (8, 10.0)
    clock.now += 5
    assert controller.tick() == (8, 10.0)
    target["now"] = (4, 10.0)  # back to 4: a third stage, not the first one again
    assert controller.tick() == (4, 10.0)
    assert [(s.stage, s.users, s.start_time, s.end_time) for s in timeline.spans] == [
        (0, 4, 1000.0, 1005.0), (1, 8, 1005.0, 1010.0), (2, 4, 1010.0, None)]
    assert controller.stage_index == 2 and not controller.finished
