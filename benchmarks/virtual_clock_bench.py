"""Which virtual clock for `predict`: the simulator's own Runner on an asyncio loop with virtual time
(what predict uses) against the same decode loop written as a SimPy process (SimPy: optional, only
for this measurement; ``pip install simpy``).

    python benchmarks/virtual_clock_bench.py

Workload: S streams on NUM_PARALLEL = S slots, each generating T tokens, the gpu profile's step time
(t1 (1 + beta (n - 1))). Measured: wall seconds and decode steps per second. The asyncio figure is the
real scheduler (simulator/scheduler.py); the SimPy one is a minimal re-implementation of only the
decode loop (no queue, no prefill, no keep-alive) — the least SimPy would cost, before the second copy
of the model it would need.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ollama_locust.simulator.profiles import PROFILES, step_time  # noqa: E402
from ollama_locust.simulator.scheduler import Job, Scheduler  # noqa: E402
from ollama_locust.simulator.virtual_time import VirtualTimeLoop, virtual_clock  # noqa: E402

GPU = PROFILES["gpu-llama3-8b"]


def asyncio_run(streams: int, tokens: int) -> float:
    loop = VirtualTimeLoop()
    sched = Scheduler(profile=GPU, models=["m"], num_parallel=streams, max_queue=100000, default_keep_alive=300.0,
                      clock=virtual_clock(loop, 0.0))
    sink: list = []

    async def one():
        r = await sched.get_runner("m", 4096, None)
        await r.generate(Job(tokens, 10, lambda j, i, c: sink.append(loop.time())))
        r.release()

    async def main():
        await asyncio.gather(*(one() for _ in range(streams)))

    started = time.perf_counter()
    loop.run_until_complete(main())
    loop.close()
    return time.perf_counter() - started


def simpy_run(streams: int, tokens: int) -> float | None:
    try:
        import simpy
    except ImportError:
        return None
    env = simpy.Environment()
    sink: list = []
    jobs = [[0, tokens] for _ in range(streams)]

    def decode(env):
        active = list(jobs)
        while active:
            yield env.timeout(step_time(GPU, len(active)))
            for job in active:
                job[0] += 1
                sink.append(env.now)
            active = [job for job in active if job[0] < job[1]]

    env.process(decode(env))
    started = time.perf_counter()
    env.run()
    return time.perf_counter() - started


def main() -> int:
    print("| streams | tokens each | decode steps | asyncio virtual (s) | SimPy (s) |")
    print("|---|---|---|---|---|")
    for streams, tokens in ((1, 20000), (10, 5000), (50, 2000), (200, 500)):
        a = min(asyncio_run(streams, tokens) for _ in range(3))
        s = simpy_run(streams, tokens)
        s = min([s] + [simpy_run(streams, tokens) for _ in range(2)]) if s is not None else None
        print(f"| {streams} | {tokens} | {tokens} | {a:.3f} | {'not installed' if s is None else f'{s:.3f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
