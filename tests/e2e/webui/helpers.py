"""Helpers of the web-UI tests: free ports, polling, real locust processes (never imported here)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LOCUSTFILE = os.path.join(REPO, "locustfile.py")
ARTIFACTS = os.path.join(REPO, "test-artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` (text, or a callable giving
    it at the end) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # not up yet
            last_error = error
        time.sleep(interval)
    what = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    out_path: str
    err_path: str

    def text(self) -> str:
        with open(self.out_path, errors="replace") as out, open(self.err_path, errors="replace") as err:
            return out.read() + err.read()


@dataclass
class Cluster:
    url: str
    run_dir: str
    procs: list[Proc] = field(default_factory=list)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the master (the workers quit with it), then anything left; bounded, SIGKILL at the end."""
        for proc in self.procs:  # master first
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.proc.wait(timeout=timeout)
        for proc in self.procs:
            if proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.text()}" for p in self.procs)
