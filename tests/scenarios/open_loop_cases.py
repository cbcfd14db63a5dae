"""The open-loop driver of one load process (--shape rate): arrivals issued into greenlets, the in-flight bound
and its dropped records, instances reused, the abort; and the shape's lead before a rate plan."""

import warnings
from types import SimpleNamespace

RUN_IN_OWN_PROCESS = True  # it imports Locust (test_open_loop.py runs it in a pytest process of its own)

with warnings.catch_warnings():  # the driver runs under Locust: import it (it patches the process) first, quietly
    warnings.simplefilter("ignore")
    import locust  # noqa: F401

import gevent

from ollama_locust import contract
from ollama_locust.scenarios import plans
from ollama_locust.scenarios.open_loop import RateDriver, StageOrder, check_classes
from ollama_locust.scenarios.record_sink import RecordSink
from ollama_locust.scenarios.stepping import ALL_AT_ONCE, ShapeController
from ollama_locust.scenarios.timeline import StageTimeline


class Sink(list):
    def add(self, record):
        self.append(record)


class SlowUser:
    """Like a Locust user (no locust import here): answers after 0.2 s, one request per task as LLMUser.ask."""

    open_loop = True
    started = 0

    def __init__(self, environment):
        self.environment = environment

    def on_start(self):
        SlowUser.started += 1

    def on_stop(self):
        pass

    def ask(self):
        record = {"outcome": contract.OK, "start_time": gevent.get_hub().loop.now()}
        try:
            gevent.sleep(0.2)
        except BaseException:
            record["outcome"] = contract.CUT_SHORT
            self.environment.llm_records.add(record)
            raise
        self.environment.llm_records.add(record)

    tasks = [ask]


def driver(rate, max_in_flight):
    environment = SimpleNamespace(user_classes=[SlowUser], parsed_options=None, host="http://127.0.0.1:9", llm_records=Sink())
    SlowUser.started = 0
    d = RateDriver(environment)
    d.start(StageOrder(stage=0, rate=rate, arrival="constant", max_in_flight=max_in_flight, classes=[["SlowUser", 1]]))
    return d, environment.llm_records


def test_open_loop_does_not_wait_for_answers_and_reuses_instances():
    d, records = driver(20.0, 100)
    gevent.sleep(1.0)
    assert 3 <= d.in_flight <= 5  # 20/s x 0.2 s: about 4 at once, none waits for another's answer
    d.stop_arrivals()
    gevent.sleep(0.3)
    assert d.in_flight == 0 and d.dropped == 0
    assert 19 <= len(records) <= 22 and all(r["outcome"] == contract.OK for r in records)
    assert SlowUser.started <= 6  # instances go back to the pool and take later arrivals


def test_in_flight_bound_drops_and_records_it():
    d, records = driver(40.0, 3)  # 40/s x 0.2 s wants 8 in flight
    gevent.sleep(1.0)
    assert d.in_flight <= 3
    d.abort()
    dropped = [r for r in records if r["outcome"] == contract.DROPPED]
    assert d.dropped == len(dropped) > 10
    assert all(r["user_class"] == "SlowUser" and r["start_time"] and "--max-in-flight" in r["error"] for r in dropped)
    assert any(r["outcome"] == contract.CUT_SHORT for r in records)  # the abort cut the running ones short
    assert d.in_flight == 0


def test_a_closed_loop_class_is_refused_in_a_rate_run():
    class BurstyUser:  # as users.BurstyUser: its task waits for the burst signal
        open_loop = False

    assert check_classes([SlowUser]) is None
    assert "BurstyUser" in check_classes([SlowUser, BurstyUser])


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_plan_waits_its_lead_then_orders_each_stage():
    clock, timeline, seen, prepared = Clock(), StageTimeline(), [], []
    stages = plans.rate_plan([1.0, 2.0], 10)
    controller = ShapeController(stages, timeline, RecordSink(None, timeline).tallies, clock=clock, lead_s=1.0,
                                 on_prepare=lambda: prepared.append(clock.now),
                                 on_stage=lambda stage, span: seen.append((stage and stage.rate, span and span.rate)))
    assert controller.tick() == (0, ALL_AT_ONCE) and prepared == [100.0] and not timeline.spans
    clock.now = 101.0
    assert controller.tick() == (0, ALL_AT_ONCE) and seen == [(1.0, 1.0)]
    clock.now = 111.0
    controller.tick()
    clock.now = 121.0
    controller.tick()
    assert seen == [(1.0, 1.0), (2.0, 2.0), (None, None)]
    assert [s.rate for s in timeline.spans] == [1.0, 2.0] and timeline.spans[0].start_time == 101.0


def test_without_a_plan_each_new_rate_is_a_stage_and_zero_goes_back_to_users():
    """--shape none (the web UI): --rate R (the LLM tab's Rate field) begins a rate stage; a new R another; 0 the users."""
    clock, timeline, seen = Clock(), StageTimeline(), []
    rate = {"now": 2.0}
    controller = ShapeController(None, timeline, RecordSink(None, timeline).tallies, clock=clock,
                                 common_target=lambda: (3, 1.0), common_rate=lambda: rate["now"],
                                 on_stage=lambda stage, span: seen.append(stage and stage.rate))
    assert controller.tick() == (0, ALL_AT_ONCE)
    clock.now += 1
    assert controller.tick() == (0, ALL_AT_ONCE) and len(timeline.spans) == 1
    rate["now"] = 5.0
    clock.now += 1
    controller.tick()
    rate["now"] = 0.0
    clock.now += 1
    assert controller.tick() == (3, 1.0)
    assert [(s.kind, s.rate, s.users) for s in timeline.spans] == [("rate", 2.0, 0), ("rate", 5.0, 0), ("hold", None, 3)]
    assert seen == [2.0, 5.0, None]
