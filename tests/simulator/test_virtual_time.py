"""The scheduler on virtual time (issue 15): the same Runner/Scheduler code, a clock that jumps."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from ollama_locust.simulator.profiles import PROFILES, Profile, plan_single, prefill_time, step_time
from ollama_locust.simulator.scheduler import REAL_CLOCK, Job, Scheduler
from ollama_locust.simulator.virtual_time import Deadlock, VirtualTimeLoop, virtual_clock

GPU = PROFILES["gpu-llama3-8b"]


def run(coro_factory, profile: Profile = GPU, num_parallel: int = 1):
    loop = VirtualTimeLoop()
    sched = Scheduler(profile=profile, models=["m"], num_parallel=num_parallel, max_queue=8,
                      default_keep_alive=300.0, clock=virtual_clock(loop, epoch=1e9))
    try:
        return loop.run_until_complete(coro_factory(sched, loop)), loop.time()
    finally:
        loop.close()


async def _one(sched, loop, n: int, prompt: int, times: list | None = None):
    runner = await sched.get_runner("m", 4096, None)
    job = Job(n, prompt, (lambda j, i, c: times.append(loop.time())) if times is not None else (lambda j, i, c: None))
    t0 = loop.time()
    await runner.generate(job)
    runner.release()
    return t0, job


def test_a_long_sleep_takes_no_wall_time():
    loop = VirtualTimeLoop(start=5.0)
    started = time.perf_counter()
    loop.run_until_complete(asyncio.sleep(3600))
    assert loop.time() == pytest.approx(3605.0)
    assert time.perf_counter() - started < 1.0
    loop.close()


def test_nothing_scheduled_is_a_deadlock_not_a_hang():
    loop = VirtualTimeLoop()
    with pytest.raises(Deadlock):
        loop.run_until_complete(loop.create_future())
    loop.close()


def test_a_lone_request_follows_the_profiles_plan_exactly():
    times: list[float] = []

    async def main(sched, loop):
        return await _one(sched, loop, 50, 100, times)

    (t0, job), _ = run(main)
    plan = plan_single(GPU, 100, 50)
    assert [t - t0 for t in times] == pytest.approx(plan, abs=1e-9)
    assert job.prefill_s == pytest.approx(prefill_time(GPU, 100))


def test_cold_load_then_keep_alive_on_the_virtual_wall_clock():
    async def main(sched, loop):
        await _one(sched, loop, 1, 1)
        return sched.runners["m"].expires_at

    expires, end = run(main)
    assert end == pytest.approx(GPU.load_time + prefill_time(GPU, 1) + step_time(GPU, 1))
    assert expires == pytest.approx(1e9 + end + 300.0)


def test_one_slot_queues_whole_requests_two_slots_share():
    async def two(sched, loop):
        await _one(sched, loop, 1, 1)  # load first
        return await asyncio.gather(_one(sched, loop, 20, 10), _one(sched, loop, 20, 10))

    (a, b), _ = run(two, num_parallel=1)
    assert b[1].first_token - a[1].last_token == pytest.approx(prefill_time(GPU, 10) + step_time(GPU, 1))
    (a, b), _ = run(two, num_parallel=2)
    assert a[1].first_token == pytest.approx(b[1].first_token)
    gap = (a[1].last_token - a[1].first_token) / 19
    assert gap == pytest.approx(step_time(GPU, 2))


def test_the_real_clock_is_the_default():
    sched = Scheduler(profile=GPU, models=["m"], num_parallel=1, max_queue=1, default_keep_alive=1.0)
    assert sched.clock is REAL_CLOCK and not REAL_CLOCK.virtual
    assert math.isclose(sched.clock.now(), time.monotonic(), abs_tol=0.1)
