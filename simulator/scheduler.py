"""The scheduler and the runners: executes the timing model of ``profiles.py`` on the event loop.

Ollama's two queues (../shared/ollama-api.md, "Scheduling under load"):

* ``Scheduler`` — requests whose model is not loaded (cold start, reload after keep-alive expiry, a
  different ``num_ctx``) go through one queue of capacity MAX_QUEUE, served one at a time; the request
  being served is not counted, so with the queue full the next arrival gets ``Busy`` (503) at once.
* ``Runner`` — per loaded model, NUM_PARALLEL slots and an unbounded FIFO wait (bounded by MAX_QUEUE
  only under ``strict_queue``). One decode loop per runner: a step with ``n`` busy slots lasts
  ``step_time(n)`` plus the prefill of requests admitted at that step, then sends one token to each.

Jobs carry an ``emit(job, index, created_at)`` callback that writes the token (the API layer builds
the bytes), so a decode step is a plain loop of writes with no task switch per token.

Every time the engine reads comes from the scheduler's ``clock`` (:class:`Clock`): ``REAL_CLOCK`` for
``ollama-locust sim`` (``time.monotonic`` and ``time.time``; steps are kept to the plan by sleeping, then
polling, then spinning), or a virtual clock (``simulator/virtual_time.py``) for ``ollama-locust predict``,
where the event loop's time jumps to the next timer and a step is one exact sleep. The timing model is
the same code either way.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import itertools
import math
import time
from collections import deque
from datetime import datetime, timezone
from typing import Callable

from ollama_locust.simulator.profiles import Profile, prefill_time, step_time

DEFAULT_NUM_CTX = 4096
SPIN = 0.002  # seconds before a planned step when the timer hands over to polling (timer precision)
SPIN_TIGHT = 0.0003  # seconds of busy-wait (no I/O served) right before a planned step
SLICE = 0.0005  # seconds of token writes between two turns of the event loop within one step


class Clock:
    """Where the scheduler's times come from. ``now``: seconds of the engine's monotonic clock (every
    Job time); ``wall``: unix time (keep-alive deadlines, ``created_at``); ``virtual``: the event loop's
    time jumps to the next timer (no spinning, a step is one exact sleep)."""

    __slots__ = ("now", "wall", "virtual")

    def __init__(self, now: Callable[[], float], wall: Callable[[], float], virtual: bool = False):
        self.now = now
        self.wall = wall
        self.virtual = virtual


#: ``sim``: time.monotonic for every engine time (loop.time() is ms-granular under uvloop), time.time for dates.
REAL_CLOCK = Clock(time.monotonic, time.time)


class Busy(Exception):
    """The scheduler queue (or, under strict_queue, the slot queue) is full: HTTP 503."""

    message = "server busy, please try again.  maximum pending requests exceeded"


class LoadFailed(Exception):
    """The model could not be loaded (a real engine's load failed): HTTP 500 with this message."""


class Disconnected(Exception):
    """The client went away while its request was generating."""


class Job:
    """One generation request inside a runner. Times are time.monotonic() seconds."""

    __slots__ = ("n_out", "prompt_tokens", "emit", "finish", "slot_start", "prefill_s", "prefill_end",
                 "first_token", "last_token", "lateness", "sent", "stall_at", "stall_s", "stall_until", "fault_at",
                 "fault_fn", "done", "closed", "on_slot")

    def __init__(self, n_out: int, prompt_tokens: int, emit: Callable[["Job", int, bytes], None]):
        self.n_out = n_out
        self.prompt_tokens = prompt_tokens
        self.emit = emit  # emit(job, index, created_at_bytes)
        self.finish: asyncio.Future | None = None
        self.slot_start = self.prefill_end = self.first_token = self.last_token = None
        self.lateness = 0.0  # send time of the last token minus the decode plan's time for it
        self.prefill_s = 0.0
        self.sent = 0
        self.stall_at = -1  # token index before which the stream pauses
        self.stall_s = 0.0
        self.stall_until = 0.0
        self.fault_at = -1  # token index at which fault_fn runs instead of the token
        self.fault_fn: Callable[["Job"], None] | None = None
        self.done = False
        self.closed = False  # set by the API layer when the transport went away
        #: called with the job when it takes a slot, before its prefill is planned (the predictor's prompt
        #: cache: what a slot holds is decided in the order requests get slots, not the order they arrive)
        self.on_slot: Callable[["Job"], None] | None = None


class Histogram:
    """Times in seconds, counted in 0.1 ms buckets up to 1 s (beyond: the last bucket; max is exact)."""

    BUCKET = 1e-4
    N = 10001

    def __init__(self) -> None:
        self.hist = [0] * self.N
        self.count = 0
        self.max = 0.0

    def clear(self) -> None:
        """In place: a running decode loop keeps its reference to ``hist``."""
        self.hist[:] = [0] * self.N
        self.count = 0
        self.max = 0.0

    def percentile(self, q: float) -> float:
        if not self.count:
            return 0.0
        i = bisect.bisect_left(list(itertools.accumulate(self.hist)), q * self.count)  # C loops: cheap to poll
        return i * self.BUCKET if i < self.N else self.max

    def record(self, value: float) -> None:
        b = int(value / self.BUCKET) if value > 0 else 0
        self.hist[b if b < self.N - 1 else self.N - 1] += 1
        self.count += 1
        if value > self.max:
            self.max = value

    def ms(self) -> dict:
        return {"p50": self.percentile(0.5) * 1e3, "p90": self.percentile(0.9) * 1e3,
                "p99": self.percentile(0.99) * 1e3, "max": self.max * 1e3}


class SendStats:
    """How closely token sends follow the decode plan (``/_sim/stats``; ``benchmarks/sim_bench.py``).

    * ``lateness``: per token, the time it was written minus the planned end of its decode step. All
      tokens of a step are due at the same instant and go out one write after another, so with n
      streams the last one is late by about n writes (~5–8 µs each on loopback).
    * ``jitter``: per token after the first, |its lateness − the previous token's lateness| of the
      same stream, i.e. how far the gap between two tokens a client sees differs from the model's
      step time (the inter-arrival jitter of RFC 3550 §6.4.1, per token instead of smoothed).
    * ``steps``: per decode step, how late its first write started (timer precision alone).
    """

    def __init__(self) -> None:
        self.lateness = Histogram()
        self.jitter = Histogram()
        self.steps = Histogram()

    def reset(self) -> None:
        for histogram in (self.lateness, self.jitter, self.steps):
            histogram.clear()

    def summary(self) -> dict:
        return {"tokens_sent": self.lateness.count, "lateness_ms": self.lateness.ms(),
                "jitter_ms": self.jitter.ms(), "decode_steps": self.steps.count,
                "step_start_lateness_ms": self.steps.ms()}


_gc_holds = [0, False]  # decode steps writing right now; whether automatic GC was on before the first


@contextlib.contextmanager
def gc_deferred():
    """No automatic garbage collection while a decode step writes its tokens (a generation-1 pass
    takes ~3–4 ms with a thousand streams, which would land mid-step as jitter); the collection that
    was due runs right after, between steps, where nothing is due. Nests across runners."""
    if _gc_holds[0] == 0:
        _gc_holds[1] = gc.isenabled()
        gc.disable()
    _gc_holds[0] += 1
    try:
        yield
    finally:
        _gc_holds[0] -= 1
        if _gc_holds[0] == 0 and _gc_holds[1]:
            gc.enable()


_created_cache: list = [None, b""]


def created_at(wall: float) -> bytes:
    """RFC 3339 UTC timestamp with microseconds, as Ollama's created_at (cached per microsecond)."""
    if _created_cache[0] != wall:
        _created_cache[0] = wall
        _created_cache[1] = (datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z").encode()
    return _created_cache[1]


class Runner:
    """A loaded (or loading) model: slots, the FIFO wait, the decode loop and keep-alive."""

    def __init__(self, sched: "Scheduler", model: str, num_ctx: int):
        self.sched = sched
        self.model = model
        self.num_ctx = num_ctx
        self.profile: Profile = sched.profile
        self.loaded = False
        self.reload_pending = False
        self.refcount = 0  # requests handed this runner and not finished
        self.keep_alive = sched.default_keep_alive
        self.expires_at: float | None = None  # wall time; None while busy
        self.loaded_at = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.busy: list[Job] = []
        self.new: list[Job] = []  # admitted, prefill at the next step
        self.waiting: deque[tuple[Job, asyncio.Future]] = deque()
        self._loop_task: asyncio.Task | None = None

    # -- load and unload (a real engine's runner overrides these) ------------------------------
    async def load(self) -> None:
        """Load the model: the profile's load time, never less (the loop's timers are ms-granular and may
        fire a fraction of a millisecond early by the engine's clock)."""
        now = self.sched.clock.now
        done_at = now() + self.profile.load_time
        while (left := done_at - now()) > 0:
            await asyncio.sleep(left)

    def close(self) -> None:
        """The scheduler dropped this runner (keep-alive expiry, reload, unload): free what it holds."""

    # -- references and keep-alive -------------------------------------------------------------
    def acquire(self, keep_alive: float | None) -> None:
        self.refcount += 1
        self.idle.clear()
        if keep_alive is not None:
            self.keep_alive = keep_alive
        if self._expiry:
            self._expiry.cancel()
            self._expiry = None
        self.expires_at = None

    def release(self) -> None:
        self.refcount -= 1
        if self.refcount > 0:
            return
        self.idle.set()
        if self.reload_pending:
            return
        ka = self.keep_alive
        if ka == 0:
            self.sched.unload(self)
        elif math.isinf(ka):
            self.expires_at = math.inf
        else:
            self.expires_at = self.sched.clock.wall() + ka
            self._expiry = asyncio.get_running_loop().call_later(ka, self.sched.unload, self)

    def expiry_wall(self) -> float:
        """expires_at for /api/ps: now + keep_alive while busy, the timer's deadline when idle."""
        if self.expires_at is not None:
            return self.expires_at
        return math.inf if math.isinf(self.keep_alive) else self.sched.clock.wall() + self.keep_alive

    # -- slots ---------------------------------------------------------------------------------
    def slots_free(self) -> bool:
        return len(self.busy) + len(self.new) < self.sched.num_parallel and not self.waiting

    async def generate(self, job: Job) -> None:
        """Wait for a slot (FIFO), generate ``job.n_out`` tokens through the decode loop, return when done.

        Cancellation (client disconnect) removes the job from the wait or frees its slot.
        """
        loop = asyncio.get_running_loop()
        job.finish = loop.create_future()
        if not self.slots_free():
            if self.sched.strict_queue and len(self.waiting) >= self.sched.max_queue:
                raise Busy()
            fut = loop.create_future()
            entry = (job, fut)
            self.waiting.append(entry)
            try:
                await fut
            except BaseException:
                if entry in self.waiting:
                    self.waiting.remove(entry)
                elif job in self.new:  # admitted in the same tick as the cancellation
                    self.new.remove(job)
                    self._admit_waiting()
                raise
        else:
            self._admit(job)
        try:
            await job.finish
        finally:
            if not job.done:
                job.done = True
                if job in self.busy:
                    self.busy.remove(job)
                elif job in self.new:
                    self.new.remove(job)
                self._admit_waiting()

    def _admit(self, job: Job) -> None:
        job.slot_start = self.sched.clock.now()
        if job.on_slot is not None:
            job.on_slot(job)
        self.new.append(job)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._decode_loop())

    def _admit_waiting(self) -> None:
        while self.waiting and len(self.busy) + len(self.new) < self.sched.num_parallel:
            job, fut = self.waiting.popleft()
            if fut.done():
                continue
            self._admit(job)
            fut.set_result(None)

    # -- the decode loop -----------------------------------------------------------------------
    async def _decode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        send_stats = self.sched.stats
        stats, jit, steps = send_stats.lateness, send_stats.jitter, send_stats.steps
        hist, bucket, nb = stats.hist, stats.BUCKET, stats.N - 1
        prof = self.profile
        _now = self.sched.clock.now
        exact = self.sched.clock.virtual  # virtual time: a timer fires exactly when due, nothing to spin
        wall_offset = self.sched.clock.wall() - _now()
        clock = _now()
        await asyncio.sleep(0)  # let jobs admitted in the same tick join the first step
        while self.busy or self.new:
            if not self.busy and self.new and _now() - clock > 0.001:
                clock = _now()  # was idle: the plan restarts now
            new = self.new
            if new:
                self.new = []
                stall = 0.0
                for job in new:
                    job.prefill_s = prefill_time(prof, job.prompt_tokens)
                    stall += job.prefill_s
                    self.busy.append(job)
                for job in new:
                    job.prefill_end = clock + stall
            else:
                stall = 0.0
            active = self.busy
            n = len(active)
            duration = stall + step_time(prof, n)
            planned = clock + duration
            delay = planned - _now()
            if delay > 0 and exact:
                await asyncio.sleep(delay)
            elif delay > 0:
                # Event-loop timers are ms-granular (uvloop) and wake late under load: sleep to just
                # before the planned time, then poll the loop (other connections are still served,
                # so arrivals are read on time) and spin only the last SPIN_TIGHT seconds.
                if delay > SPIN:
                    await asyncio.sleep(delay - SPIN)
                else:
                    await asyncio.sleep(0)  # at least one turn of the loop per step, however short
                while planned - _now() > SPIN_TIGHT:
                    await asyncio.sleep(0)
                while _now() < planned:
                    pass
            else:
                await asyncio.sleep(0)
                if duration == 0 or delay < -0.5:  # instant profile, or hopelessly behind: re-plan from now
                    planned = _now()
            clock = planned
            if active:
                steps.record(_now() - planned)
            created = b"" if exact else created_at(planned + wall_offset)  # virtual time: nobody reads it
            finished = None
            sent_before = stats.count
            # instant profile (no plan to keep): whole steps, as fast as the machine goes
            slice_end = _now() + SLICE if duration > 0 else math.inf
            with gc_deferred():
                for job in tuple(active):  # a copy: the list may change between slices
                    if job.done:
                        continue
                    i = job.sent
                    if i == job.stall_at:
                        if job.stall_until == 0.0:
                            job.stall_until = planned + job.stall_s
                        if planned < job.stall_until:
                            continue
                    if i == job.fault_at:
                        job.fault_fn(job)
                        job.fault_at = -1
                        if job.done:
                            continue
                    job.emit(job, i, created)
                    now = _now()
                    lat = now - planned
                    if lat > stats.max:
                        stats.max = lat
                    b = int(lat / bucket) if lat > 0 else 0
                    hist[b if b < nb else nb] += 1
                    stats.count += 1
                    job.sent = i + 1
                    if i == 0:
                        job.first_token = now
                    else:  # jitter: this token's lateness minus the previous one's (its gap vs the model's)
                        jit.record(abs(lat - job.lateness))
                    job.lateness = lat
                    job.last_token = now
                    if job.sent >= job.n_out:
                        job.done = True
                        (finished := finished or []).append(job)
                    if now > slice_end:
                        # A long step (hundreds of streams) is written in slices of SLICE seconds with the
                        # event loop served in between, so requests that arrive meanwhile are read at once.
                        await asyncio.sleep(0)
                        slice_end = _now() + SLICE
            if finished:
                for job in finished:
                    active.remove(job)
                    if job.finish and not job.finish.done():
                        job.finish.set_result(None)
                self._admit_waiting()
            if duration == 0 and stats.count == sent_before and active:
                await asyncio.sleep(0.001)  # instant profile, every stream stalled: don't spin
            # drop jobs finished by a fault or a disconnect
            if any(j.done for j in active):
                self.busy = [j for j in active if not j.done]
        self._loop_task = None


class Scheduler:
    """Loads models through Ollama's one-at-a-time scheduler queue and hands out runners."""

    def __init__(self, *, profile: Profile, models: list[str], num_parallel: int, max_queue: int,
                 default_keep_alive: float, strict_queue: bool = False,
                 runner_factory: Callable[["Scheduler", str, int], Runner] | None = None,
                 clock: Clock = REAL_CLOCK):
        self.profile = profile
        self.clock = clock
        self.runner_factory = runner_factory or Runner  # (scheduler, model, num_ctx) -> a Runner
        self.models = models
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.default_keep_alive = default_keep_alive
        self.strict_queue = strict_queue
        self.runners: dict[str, Runner] = {}
        self.queue: deque = deque()
        self._serving = False
        self.stats = SendStats()

    def warm_runner(self, model: str, num_ctx: int) -> Runner | None:
        r = self.runners.get(model)
        if r is not None and r.loaded and not r.reload_pending and r.num_ctx == num_ctx:
            return r
        return None

    async def get_runner(self, model: str, num_ctx: int, keep_alive: float | None) -> Runner:
        """A loaded runner with a reference taken (call ``release``). Raises Busy when the queue is full."""
        r = self.warm_runner(model, num_ctx)
        if r is not None:
            r.acquire(keep_alive)
            return r
        if self._serving and len(self.queue) >= self.max_queue:
            raise Busy()
        fut = asyncio.get_running_loop().create_future()
        entry = (model, num_ctx, keep_alive, fut)
        self.queue.append(entry)
        if not self._serving:
            self._serving = True
            asyncio.get_running_loop().create_task(self._serve())
        try:
            return await fut
        except asyncio.CancelledError:
            if entry in self.queue:
                self.queue.remove(entry)
            elif fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().release()
            raise

    async def _serve(self) -> None:
        try:
            while self.queue:
                model, num_ctx, keep_alive, fut = self.queue.popleft()
                if fut.done():
                    continue
                r = self.warm_runner(model, num_ctx)
                if r is None:
                    try:
                        r = await self._load(model, num_ctx)
                    except Exception as e:  # a real engine's load failed: this request gets a 500
                        if not fut.done():
                            fut.set_exception(e if isinstance(e, LoadFailed) else LoadFailed(str(e)))
                        continue
                if fut.done():  # client left during the load
                    continue
                r.acquire(keep_alive)
                fut.set_result(r)
        finally:
            self._serving = False

    async def _load(self, model: str, num_ctx: int) -> Runner:
        old = self.runners.get(model)
        if old is not None:
            old.reload_pending = True
            await old.idle.wait()
            self.unload(old)
        r = self.runner_factory(self, model, num_ctx)
        self.runners[model] = r
        try:
            await r.load()
        except BaseException:
            if self.runners.get(model) is r:
                del self.runners[model]
            raise
        r.loaded = True
        r.loaded_at = self.clock.wall()
        return r

    def unload(self, r: Runner) -> None:
        if r._expiry:
            r._expiry.cancel()
            r._expiry = None
        if r.refcount > 0 and not r.reload_pending:
            return
        if self.runners.get(r.model) is r:
            del self.runners[r.model]
            r.close()

    def loaded(self) -> list[Runner]:
        return [r for r in self.runners.values() if r.loaded]
