"""The open-loop side of ``--shape rate`` in one load process: arrivals issued, whatever the server does.

The master (or the single process) decides the stages; as a rate stage begins it tells every load process
its share (:class:`StageOrder`: the rate, the arrival process, this process's index among ``count``, its
share of ``--max-in-flight``, the user classes and their weights, and the options and host of the run,
so the order does not depend on Locust's spawn message arriving first). :class:`RateDriver` then

* runs the arrival loop (``scenarios.arrivals``: absolute times, never "a gap after the last answer");
* at each arrival draws a user class by its weight and takes an idle instance of it from a pool (a new one,
  started with the class's own ``on_start``, when none is idle), and runs one of the class's own tasks in a
  greenlet of its own — RecipeUser's and StudentUser's prompts, conversations and reply checks unchanged, one
  request per instance at a time (each instance owns its keep-alive connection); a StudentUser instance goes
  back to the pool after its answer and carries its conversation on at a later arrival;
* when this process already has its share of ``--max-in-flight`` requests running, does not send the
  arrival and records it as ``dropped`` (``contract.DROPPED``, start_time = the arrival time), never
  silently slower.

A new stage replaces the arrival loop (the requests in flight go on); the drain stops it; a stop
(:meth:`RateDriver.abort`) cuts the requests in flight short, recorded as ``cut_short``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import gevent
import gevent.pool
from locust.exception import StopUser

from ollama_locust import contract, options
from ollama_locust.scenarios import arrivals
from ollama_locust.scenarios.clients.base import new_record
from ollama_locust.scenarios.request_report import next_request_id, report_record

logger = logging.getLogger(__name__)

PREPARE_S = 1.0  # the rate plan begins this long after the test starts: the load processes prepare meanwhile
MAX_SKEW_S = 5.0  # an order's start further than this from the receiver's clock: its own receipt time instead
MESSAGE = "llm_rate"  # master -> worker: a StageOrder as a dict, or None (no new arrivals)
IN_FLIGHT_MESSAGE = "llm_in_flight"  # worker -> master: its requests in flight (the drain waits for them)


@dataclass
class StageOrder:
    stage: int
    rate: float  # offered requests/s across all load processes
    arrival: str  # poisson | constant
    index: int = 0  # this process among count
    count: int = 1
    max_in_flight: int = 1000  # this process's share of --max-in-flight
    max_in_flight_total: int = 1000
    classes: list = field(default_factory=list)  # [[class name, weight], ...]
    age_s: float = 0.0  # how long ago (sender's clock) the stage began: the schedule starts that far back ...
    start: float | None = None  # ... or at this time on the receiver's clock (a worker: the master's time + its offset)
    host: str | None = None
    options: dict = field(default_factory=dict)  # the run's project options (dest -> value)
    seed: int | None = None
    prepare: bool = False  # before the first stage: apply the options, start one instance per class, no arrivals

    def as_message(self) -> dict:
        return dict(self.__dict__)


def order_for(environment, stage: int, rate: float, index: int, count: int, age_s: float = 0.0,
              prepare: bool = False, start: float | None = None) -> StageOrder:
    """The order for process ``index`` of ``count`` of a rate stage, from the run's options and classes."""
    total = int(options.get(environment, "max_in_flight"))
    parsed = getattr(environment, "parsed_options", None)
    fixed = int(options.get(environment, "arrival_seed") or 0)
    seed = arrivals.stream_seed(fixed, stage, index) if fixed else random.SystemRandom().getrandbits(32)
    return StageOrder(stage=stage, rate=rate, arrival=options.get(environment, "arrival"), index=index, count=count,
                      max_in_flight=arrivals.share(total, index, count), max_in_flight_total=total,
                      classes=[[cls.__name__, float(getattr(cls, "weight", 1) or 1)] for cls in environment.user_classes],
                      age_s=age_s, start=start, host=environment.host,
                      options=options.values(parsed) if parsed is not None else {},
                      seed=seed, prepare=prepare)


def check_classes(user_classes) -> str | None:
    """Why these classes cannot run open loop (one line), or None."""
    closed = [cls.__name__ for cls in user_classes if not getattr(cls, "open_loop", False)]
    if closed:
        return (f"--shape rate: {', '.join(closed)} cannot take part in open-loop arrivals (a rate run draws its "
                "requests from StudentUser and RecipeUser by weight); leave it out of the user classes")
    return None


class RateDriver:
    """The arrival loop and the requests in flight of one load process (see the module docstring)."""

    def __init__(self, environment, clock=time.time):
        self.environment = environment
        self.clock = clock
        self.loop: gevent.Greenlet | None = None
        self.requests = gevent.pool.Group()
        self.idle: dict[str, list] = {}
        self.order: StageOrder | None = None
        self.arrived = self.sent = self.dropped = 0
        self.last_fired = -math.inf  # the time of the last arrival issued (any stage)

    @property
    def in_flight(self) -> int:
        return len(self.requests)

    def start(self, order: StageOrder | dict) -> None:
        """Begin a rate stage: its arrivals replace the previous stage's (whose requests go on)."""
        if isinstance(order, dict):
            order = StageOrder(**order)
        if order.prepare:
            self.prepare(order)
            return
        self.stop_arrivals()
        self._apply(order)
        classes = self._classes(order)
        if not classes:
            logger.error("--shape rate: none of the user classes %s runs in this process", order.classes)
            return
        self.order = order
        now = self.clock()
        begin = order.start if order.start is not None and abs(order.start - now) < MAX_SKEW_S else now - max(0.0, order.age_s)
        rng = random.Random(order.seed)  # the arrival times alone: arrival_times(..., Random(seed)) reproduces them
        draw = random.Random(~(order.seed or 0))  # the user-class draws
        names, weights = zip(*classes)
        times = arrivals.arrival_times(order.rate, order.arrival, begin, order.index, order.count, rng)
        # the previous stage's loop ran on until this order arrived: its arrivals after this stage's start stand
        # for the new stage's first ones (one stream through the change, none doubled)
        floor = self.last_fired
        times = (t for t in times if t > floor)

        def fire(t: float) -> None:
            self.last_fired = t
            self._arrive(t, draw.choices(names, weights)[0], order)

        self.loop = gevent.spawn(arrivals.issue, times, math.inf, self.clock, gevent.sleep, fire)
        logger.info("rate stage %d: %.3g req/s (%s), this process %d of %d, up to %d in flight", order.stage,
                    order.rate, order.arrival, order.index + 1, order.count, order.max_in_flight)

    def prepare(self, order: StageOrder) -> None:
        """Before the first stage (``PREPARE_S`` ahead): the options, and one idle instance of each class, so
        that the one-off start-up of a load process (its first client, the prompt sets, the heap freeze of
        ``users.freeze_start_up_heap``: 0.1-0.3 s) does not delay the first arrivals."""
        self._apply(order)
        for name, _ in self._classes(order):
            pool = self.idle.setdefault(name, [])
            if not pool:
                user = self._new_user(name)
                if user is not None:
                    pool.append(user)

    def _apply(self, order: StageOrder) -> None:
        """The run's options and host, as the master has them (a worker may not have had a spawn message yet)."""
        environment = self.environment
        if order.host:
            environment.host = order.host
        parsed = getattr(environment, "parsed_options", None)
        if parsed is not None and order.options:
            vars(parsed).update({k: v for k, v in order.options.items() if k != "run_context"})

    def _classes(self, order: StageOrder) -> list[tuple[str, float]]:
        known = {cls.__name__: cls for cls in self.environment.user_classes}
        self._by_name = known
        return [(name, weight) for name, weight in order.classes if name in known and weight > 0]

    def stop_arrivals(self) -> None:
        """No new arrivals (a new stage takes over, or the drain); the requests in flight go on."""
        if self.loop is not None:
            self.loop.kill(block=True)
            self.loop = None
        self.order = None

    def abort(self) -> None:
        """The test stops: no new arrivals, the requests in flight cut short (each recorded as such); the idle
        instances close (the next test may have other options: a new host, model or API)."""
        self.stop_arrivals()
        self.requests.kill(block=True, timeout=5)
        idle, self.idle = self.idle, {}
        for users in idle.values():
            for user in users:
                try:
                    user.on_stop()
                except Exception:
                    logger.exception("closing an idle open-loop user failed")

    def _arrive(self, t: float, name: str, order: StageOrder) -> None:
        self.arrived += 1
        if self.in_flight >= order.max_in_flight:
            self._drop(t, name, order)
            return
        pool = self.idle.setdefault(name, [])
        user = pool.pop() if pool else self._new_user(name)
        if user is None:
            return
        self.sent += 1
        user.arrival_time = t  # LLMUser._report: the record's send_lag_ms
        self.requests.spawn(self._run, user, name)

    def _new_user(self, name: str):
        cls = self._by_name[name]
        user = cls(self.environment)
        try:
            user.on_start()
        except StopUser:  # a bad option: on_start logged it (check_options refuses it before the run)
            return None
        return user

    def _run(self, user, name: str) -> None:
        """One of the user's own tasks, once: its request, reported by the user (``LLMUser.ask``)."""
        done = False
        try:
            random.choice(user.tasks)(user)
            done = True
        except StopUser:
            pass
        except Exception:  # a bug in a task must not end the arrivals; it is logged with its traceback
            logger.exception("%s: open-loop request failed", name)
        finally:
            if done:
                self.idle.setdefault(name, []).append(user)
            else:
                user.on_stop()

    def _drop(self, t: float, name: str, order: StageOrder) -> None:
        self.dropped += 1
        environment = self.environment
        record = new_record(options.get(environment, "api"), options.get(environment, "model"), next_request_id())
        record.update(outcome=contract.DROPPED, start_time=t, send_lag_ms=max(0.0, (self.clock() - t) * 1000.0),
                      error=f"not sent: {order.max_in_flight} requests of this load process in flight "
                            f"(--max-in-flight {order.max_in_flight_total})")
        try:
            report_record(environment, record, name, f"{name} (dropped)")
        except Exception:
            logger.exception("reporting a dropped arrival failed")
