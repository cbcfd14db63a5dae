"""Virtual time for the scheduler: an asyncio event loop whose clock jumps to the next timer.

``ollama-locust predict`` runs the simulator's own ``Scheduler``/``Runner`` (``scheduler.py``) and the
virtual users on this loop. Nothing waits for real: when no callback is ready, the selector, instead
of blocking for ``timeout`` seconds, moves the loop's clock forward by ``timeout`` (the time to the
next scheduled timer) and returns at once, so a 4-minute step plan runs in as long as its callbacks
take. The real selector is still polled (non-blocking) so the loop's own self-pipe works.

    loop = VirtualTimeLoop(start=0.0)
    sched = Scheduler(..., clock=virtual_clock(loop, epoch=time.time()))
    loop.run_until_complete(main())

Why this and not SimPy: see docs/predict.md ("The virtual clock") — the same asyncio code runs on both
clocks, where SimPy would need the scheduler rewritten as SimPy processes (a second copy of the model).
"""

from __future__ import annotations

import asyncio
import selectors

from ollama_locust.simulator.scheduler import Clock


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is scheduled: every task waits for something that never comes."""


class _JumpingSelector(selectors.DefaultSelector):
    """A real selector that never blocks: a wait of ``timeout`` seconds advances the virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: "VirtualTimeLoop | None" = None

    def select(self, timeout=None):
        # Only the loop's own wake-up pipe registered (a prediction has no sockets): nothing to poll, as
        # call_soon_threadsafe queues its callback before it writes to the pipe.
        events = super().select(0) if len(self.get_map()) > 1 else []
        if events or timeout == 0:
            return events
        if timeout is None:
            if self.loop is not None and self.loop.waiting_is_deadlock:
                raise Deadlock("virtual time: nothing scheduled and nothing ready (a task waits forever)")
            return events
        self.loop.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` is the virtual clock, advanced only between callbacks."""

    def __init__(self, start: float = 0.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = float(start)
        self.waiting_is_deadlock = True

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_now += seconds


def virtual_clock(loop: VirtualTimeLoop, epoch: float) -> Clock:
    """The scheduler's clock on ``loop``: ``now`` is the loop's time, ``wall`` is ``epoch`` + that."""
    now = loop.time
    return Clock(now, lambda: epoch + now(), virtual=True)


__all__ = ["Deadlock", "VirtualTimeLoop", "virtual_clock"]
