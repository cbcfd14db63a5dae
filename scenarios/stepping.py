"""The decisions of the load shape: which stage, when to stop on failure, when the drain is over.

:class:`ShapeController` is a plain object with an injected clock (no Locust import), so stepping,
stop-on-failure and draining are unit-tested with plain numbers; ``scenarios.shapes.LLMShape`` forwards
Locust's ``tick()`` to it.

End of a plan: the controller asks for 0 users; Locust then lets every user finish the request it is in
(``--stop-timeout``, set to the drain timeout) while no new ones start; when no user is left, or the
drain timeout has passed, the controller waits a moment for the last records to arrive and ends the run.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ollama_locust.scenarios import plans
from ollama_locust.scenarios.record_sink import StageTally
from ollama_locust.scenarios.timeline import StageTimeline

logger = logging.getLogger(__name__)

RECORD_GRACE_S = 1.5  # records are shipped every second: wait this long for the last ones
BURST_WAIT_FRACTION = 0.5  # a burst fires when its users run, or after this share of the burst stage at most
ALL_AT_ONCE = 1_000_000.0  # spawn rate for "all at once": Locust dispatches every user in one go


class ShapeController:
    def __init__(
        self,
        stages: list[plans.Stage] | None,
        timeline: StageTimeline,
        tallies: dict[int, StageTally],
        *,
        common_target: Callable[[], tuple[int, float]] = lambda: (1, 1.0),
        run_time_s: float | None = None,
        stop_on_failure: bool = False,
        min_success: float = 0.95,
        slo_p95_ms: float | None = None,
        slo_ttft_p95_ms: float | None = None,
        drain_timeout_s: float = 10.0,
        user_count: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
        on_stage: Callable[[plans.Stage | None, object], None] | None = None,
        lead_s: float = 0.0,
        on_prepare: Callable[[], None] | None = None,
        common_rate: Callable[[], float] = lambda: 0.0,
    ):
        self.stages = stages
        self.timeline = timeline
        self.tallies = tallies
        self.common_target = common_target  # (users, spawn rate) without a plan: read at every tick
        self._common: tuple[int, float] = (1, 1.0)
        self.common_rate = common_rate  # without a plan: an open-loop rate (req/s, 0 = users), read at every tick
        self._rate = 0.0
        self.run_time_s = run_time_s
        self.stop_on_failure = stop_on_failure
        self.min_success = min_success
        self.slo_p95_ms = slo_p95_ms
        self.slo_ttft_p95_ms = slo_ttft_p95_ms
        self.drain_timeout_s = drain_timeout_s
        self.user_count = user_count
        self.clock = clock
        self.on_stage = on_stage  # called with (the plan's stage, its span) as a stage begins, (None, None) at the drain
        self.lead_s = lead_s  # the plan begins this long after the first tick (no users meanwhile) ...
        self.on_prepare = on_prepare  # ... called at the first tick: the load processes prepare (--shape rate)
        self.started_at: float | None = None
        self.stage_index: int | None = None
        self.drain_started_at: float | None = None
        self.empty_since: float | None = None
        self.finished = False  # the plan ran to its end (or stopped on failure): not an interruption
        self.failed_stage: int | None = None
        self.failure_reason: str | None = None

    # -- the stage the plan is in ------------------------------------------------------------
    def _planned_index(self, elapsed: float) -> int | None:
        if self.stages is None:
            if self.run_time_s is not None and elapsed >= self.run_time_s:
                return None
            if self.stage_index is None:
                return 0
            # Locust's -u/-r: an edit of the user count (the web UI's "Edit") starts a new stage; so does a new --rate
            current = self.timeline.current
            if current and self._rate:
                return self.stage_index + 1 if current.rate != self._rate else self.stage_index
            return self.stage_index + 1 if current and (current.users != self._common[0] or current.rate) else self.stage_index
        return plans.stage_index_at(self.stages, elapsed)

    def _stage_target(self, index: int) -> tuple[int, float, float, str]:
        if self.stages is None:
            return (0, ALL_AT_ONCE, 0.0, "rate") if self._rate else (*self._common, 0.0, "hold")
        stage = self.stages[index]
        return stage.users, stage.spawn_rate or ALL_AT_ONCE, stage.settle_s, stage.kind

    def tick(self) -> tuple[int, float] | None:
        now = self.clock()
        if self.started_at is None:
            self.started_at = now + self.lead_s
            if self.on_prepare is not None:
                self.on_prepare()
        if now < self.started_at:
            return 0, ALL_AT_ONCE
        if self.drain_started_at is not None:
            return self._drain_tick(now)
        if self.stages is None:
            self._common = self.common_target()
            self._rate = self.common_rate() or 0.0

        index = self._planned_index(now - self.started_at)
        if index != self.stage_index and self.stage_index is not None:
            failure = self._check_failure(self.stage_index)
            if failure and self.stop_on_failure:
                logger.info("stage %d failed (%s): stopping the step test", self.stage_index, failure)
                index = None
        if index is None:
            return self._begin_drain(now)
        if index != self.stage_index:
            self.stage_index = index
            users, _, settle_s, kind = self._stage_target(index)
            if self.stages is None and index > 0:
                logger.info("%s: stage %d begins", f"rate changed to {self._rate:g} req/s" if self._rate
                            else f"user count changed to {users}", index)
            stage = self.stages[index] if self.stages is not None else \
                plans.Stage(0, 0.0, 0.0, "rate", 0.0, self._rate) if self._rate else None
            span = self.timeline.begin(users, settle_s, kind, now, rate=stage.rate if stage is not None else None)
            if self.on_stage is not None:
                self.on_stage(stage, span)
        users, spawn_rate, _, _ = self._stage_target(index)
        return users, spawn_rate

    def _check_failure(self, index: int) -> str | None:
        tally = self.tallies.get(index)
        if tally is None:
            return None
        reason = tally.fails(self.min_success, self.slo_p95_ms, self.slo_ttft_p95_ms)
        if reason and self.failed_stage is None:
            self.failed_stage, self.failure_reason = index, reason
        return reason

    def _begin_drain(self, now: float) -> tuple[int, float]:
        self.drain_started_at = now
        self.timeline.finish(now)
        self.finished = True
        if self.on_stage is not None:
            self.on_stage(None, None)  # no new arrivals (--shape rate); the requests in flight finish
        logger.info("plan complete: draining in-flight requests (up to %.0f s)", self.drain_timeout_s)
        return 0, ALL_AT_ONCE

    def _drain_tick(self, now: float) -> tuple[int, float] | None:
        if self.user_count() > 0 and now - self.drain_started_at < self.drain_timeout_s:
            self.empty_since = None
            return 0, ALL_AT_ONCE
        if self.empty_since is None:
            self.empty_since = now
        if now - self.empty_since < RECORD_GRACE_S:
            return 0, ALL_AT_ONCE
        return None


def burst_due(span, planned_s: float, now: float) -> bool:
    """Whether a burst stage's signal should go out now (``--shape burst``): once its target user count
    runs (``span.reached_s``, from the master's samples), or, if it never gets there, after
    ``BURST_WAIT_FRACTION`` of the stage so that the users who do run still fire together."""
    if span is None or span.kind != "burst" or span.end_time is not None:
        return False
    return span.reached_s is not None or now - span.start_time >= BURST_WAIT_FRACTION * planned_s
