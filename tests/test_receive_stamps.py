"""Kernel receive stamps (ollama_locust.receive_stamps): a peek dates bytes waiting on a socket by when they
reached the machine, and leaves them for the socket's reader."""

from __future__ import annotations

import socket
import sys
import time
import types

import pytest

from ollama_locust import receive_stamps

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's"),
              pytest.mark.usefixtures("stamping_switched_on")]


def test_a_peek_dates_waiting_bytes_by_their_arrival_and_leaves_them():
    listener = socket.create_server(("127.0.0.1", 0))
    assert receive_stamps.enable(listener)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        assert receive_stamps.enable(server)
        assert receive_stamps.waiting_since(server.fileno()) is None  # nothing waits yet
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        written = time.monotonic()
        time.sleep(0.2)  # a busy server reads it late
        arrived = receive_stamps.waiting_since(server.fileno())
        assert arrived is not None and abs(arrived - written) < 0.05 < time.monotonic() - arrived
        assert server.recv(100) == b"GET / HTTP/1.1\r\n\r\n"  # the peek took nothing
        assert server.fileno() != -1  # and the descriptor is still the socket's
    finally:
        for sock in (client, server, listener):
            sock.close()


def test_a_shifted_process_clock_is_measured_and_taken_out(monkeypatch):
    # a worker under libfaketime: its time.time() runs 0.5 s ahead of the clock the kernel stamps with
    shifted = types.SimpleNamespace(time=lambda: time.time() + 0.5, monotonic=time.monotonic)
    monkeypatch.setattr(receive_stamps, "time", shifted)
    receive_stamps.clock_shift.cache_clear()
    try:
        assert receive_stamps.clock_shift() == pytest.approx(0.5, abs=0.01)
        assert receive_stamps.kernel_time() == pytest.approx(time.time(), abs=0.01)
        test_a_peek_dates_waiting_bytes_by_their_arrival_and_leaves_them()  # dated as without the shift
    finally:
        receive_stamps.clock_shift.cache_clear()


def test_an_unshifted_clock_has_no_shift():
    receive_stamps.clock_shift.cache_clear()
    assert receive_stamps.clock_shift() == 0.0
