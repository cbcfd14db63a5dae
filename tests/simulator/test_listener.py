"""The simulator's listener (simulator/listener.py) dates a new connection's first request by when its bytes
reached the machine, also when they come while the loop is busy (a request already waiting at a late accept:
tests/e2e/test_saturation.py's flood)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import pytest

from ollama_locust.simulator.listener import StampedListener
from ollama_locust.simulator.server import new_event_loop

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's"),
              pytest.mark.usefixtures("stamping_switched_on")]

BUSY_S = 0.2  # the loop is held this long while the request arrives


class Recorder(asyncio.Protocol):
    def __init__(self, arrived: float, got: list):
        self.arrived, self.got = arrived, got

    def data_received(self, data: bytes) -> None:
        self.got.append((self.arrived, time.monotonic(), data))


def serve_one(client) -> tuple[float, float, bytes, float]:
    """Run a listener on a uvloop loop and ``client(port, loop, listener)`` in a thread; returns the
    connection's (arrived, read at, bytes, written at)."""
    loop = new_event_loop()
    got: list = []
    written: list = []

    async def main() -> None:
        listener = StampedListener(lambda arrived: Recorder(arrived, got), "127.0.0.1", 0)
        thread = threading.Thread(target=lambda: written.append(client(listener.port(), loop, listener)))
        thread.start()
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        thread.join(5)
        listener.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert got, "the request never reached the protocol"
    arrived, read_at, data = got[0]
    return arrived, read_at, data, written[0]


def test_a_request_that_comes_while_the_loop_is_busy_is_dated_by_its_arrival():
    def client(port, loop, listener):
        sock = socket.create_connection(("127.0.0.1", port))
        while not listener.waiting:  # accepted, nothing sent yet: the listener watches it
            time.sleep(0.001)
        go = threading.Event()
        loop.call_soon_threadsafe(lambda: (go.set(), time.sleep(BUSY_S)))  # the loop is busy elsewhere
        go.wait(5)
        time.sleep(0.02)
        written = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        time.sleep(BUSY_S)
        sock.close()
        return written

    arrived, read_at, data, written = serve_one(client)
    assert data.startswith(b"GET / HTTP/1.1")
    assert read_at - written > BUSY_S / 2  # read late ...
    assert abs(arrived - written) < 0.005, (arrived - written)  # ... dated by its arrival


def test_a_client_that_leaves_without_a_request_is_handed_over_and_closed():
    loop = new_event_loop()
    lost: list = []

    class Watcher(asyncio.Protocol):
        def connection_lost(self, exc) -> None:
            lost.append(exc)

    async def main() -> None:
        listener = StampedListener(lambda arrived: Watcher(), "127.0.0.1", 0)
        sock = socket.create_connection(("127.0.0.1", listener.port()))
        for _ in range(200):
            if listener.waiting:
                break
            await asyncio.sleep(0.005)
        sock.close()  # an EOF: the watch hands it over and the transport sees the end
        for _ in range(200):
            if lost:
                break
            await asyncio.sleep(0.005)
        listener.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert lost == [None]
