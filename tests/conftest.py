"""Shared fixtures: a simulator in a background thread (`sim`) or in a child process (`sim_process`), and
the machine's receive stamping switched on (`stamping_switched_on`)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
import time

import pytest

from ollama_locust import receive_stamps
from ollama_locust.simulator import SimConfig, run_in_thread, start_process


@pytest.fixture(scope="session")
def stamping_switched_on():
    """Linux switches receive stamping on for the whole machine when the first socket asks for it, and it
    does so later, from a kernel worker (``net_enable_timestamp``): a packet that arrives before that worker
    has run carries no stamp (1 in 500 fresh starts here). A socket held stamped
    keeps it on; the tests that hold a stamp to the microsecond begin once a packet has come stamped."""
    listener = socket.create_server(("127.0.0.1", 0))
    assert receive_stamps.enable(listener)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    deadline = time.monotonic() + 5.0
    try:
        while True:
            written = time.monotonic()
            client.sendall(b"x")
            time.sleep(0.02)
            arrived = receive_stamps.waiting_since(server.fileno())
            if arrived is not None and arrived - written < 0.01:
                break
            assert time.monotonic() < deadline, "the kernel stamped no packet on time in 5 s"
            server.recv(100)
        yield
    finally:
        for sock in (client, server, listener):
            sock.close()


@pytest.fixture
def sim():
    """Factory: ``url = sim(profile="instant", num_parallel=4, **SimConfig fields)``; stopped at test end."""
    with contextlib.ExitStack() as stack:
        def start(profile: str = "instant", num_parallel: int = 4, **overrides) -> str:
            cfg = dataclasses.replace(SimConfig(), port=0, profile=profile, num_parallel=num_parallel, **overrides)
            return stack.enter_context(run_in_thread(cfg))
        yield start


@pytest.fixture
def sim_process():
    """Factory: ``handle = sim_process("--profile", "instant", num_parallel=2)`` -> .url, .pid, .proc.

    Positional arguments are passed as they are; keyword arguments become ``--name value`` flags.
    """
    with contextlib.ExitStack() as stack:
        def start(*args: str, **flags) -> object:
            argv = list(args)
            for name, value in flags.items():
                flag = "--" + name.replace("_", "-")
                argv += [flag] if value is True else [flag, str(value)]
            return stack.enter_context(start_process(argv))
        yield start


# Markers by folder (pyproject.toml registers them): everything under tests/e2e/ is `slow` (real locust
# processes, seconds to minutes each); `engine` = llama.cpp, `browser` = headless Chromium, `gateway` = nginx.
# The fast subset: `python -m pytest -m "not slow"`.
FOLDER_MARKERS = {"engine": "engine", "webui": "browser", "deploy": "gateway"}


def pytest_collection_modifyitems(config, items):
    tests_dir = config.rootpath / "tests"
    for item in items:
        try:
            parts = item.path.relative_to(tests_dir).parts
        except ValueError:
            continue
        if parts[0] != "e2e":
            continue
        item.add_marker(pytest.mark.slow)
        if len(parts) > 2 and parts[1] in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, FOLDER_MARKERS[parts[1]]))
        if "nginx_gateway" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gateway)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Locust runs in subprocesses only: importing it here monkey-patches this process (threads become
    greenlets), and every later test that runs the simulator in a thread hangs. The first test that does it
    fails, named."""
    yield
    if getattr(item.module, "RUN_IN_OWN_PROCESS", False):  # run alone, by a test that starts a pytest for it
        return
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        pytest.fail("this test monkey-patched the pytest process (it imported locust?): run Locust in a "
                    "subprocess, as tests/scenarios/test_open_loop.py does", pytrace=False)
