"""Running the simulator: in this process's event loop (``serve``), in a background thread for tests
(``run_in_thread``), or as a child process so it does not share a CPU/GIL with the load generator
(``start_process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from ollama_locust import descriptors
from ollama_locust.simulator.api import App
from ollama_locust.simulator.config import SimConfig
from ollama_locust.simulator.http import Conn
from ollama_locust.simulator.listener import StampedListener

LISTENING_PREFIX = "ollama-locust sim: listening on "


class SimStartError(RuntimeError):
    """The simulator could not start (bad port, the child process died, no listening line in time)."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def listening_line(cfg: SimConfig, url: str) -> str:
    if cfg.engine == "llama-cpp":
        return (f"{LISTENING_PREFIX}{url} (engine llama-cpp: model {cfg.model_names()[0]} from {cfg.model_file}, "
                f"one request at a time; num_parallel {cfg.num_parallel}, max_queue {cfg.max_queue})")
    return (f"{LISTENING_PREFIX}{url} (profile {cfg.profile_file or cfg.profile}, num_parallel {cfg.num_parallel}, "
            f"max_queue {cfg.max_queue})")


async def serve(cfg: SimConfig, stop: asyncio.Event, ready: Callable[[str], None] | None = None) -> None:
    """Serve until ``stop`` is set; ``ready(url)`` is called once listening. OSError if the bind fails."""
    cfg.validate()
    descriptors.reserve()  # a flood of new connections never waits for the kernel to grow the table
    app = App(cfg)
    conns: set[Conn] = set()

    def on_open(c: Conn) -> None:
        conns.add(c)
        app.on_open(c)

    def on_close(c: Conn) -> None:
        conns.discard(c)
        app.on_close(c)

    try:
        listener = StampedListener(lambda arrived: Conn(app.handle, on_open, on_close, arrived), cfg.host, cfg.port)
    except BaseException:
        app.close()
        raise
    try:
        port = listener.port()
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        if ready:
            ready(f"http://{host}:{port}")
        watcher = asyncio.ensure_future(_stop_when_orphaned(stop, conns)) if cfg.stop_on_stdin_eof else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
    finally:
        listener.close()
        for c in list(conns):
            c.abort()
        await asyncio.sleep(0)  # the aborted transports' connection_lost
        app.close()


async def _stop_when_orphaned(stop: asyncio.Event, conns: set, idle_for: float = 1.0, poll: float = 0.25) -> None:
    """``--stop-on-stdin-eof``: once standard input closes (the launcher holding it died), set ``stop`` as
    soon as no connection has been open for ``idle_for`` seconds — a load generator still finishing its
    requests keeps it serving."""
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    threading.Thread(target=_read_until_eof, args=(sys.stdin.buffer, lambda: loop.call_soon_threadsafe(closed.set)),
                     name="stdin-eof", daemon=True).start()
    await closed.wait()
    idle_since = None
    while not stop.is_set():
        now = time.monotonic()
        idle_since = (idle_since or now) if not conns else None
        if idle_since is not None and now - idle_since >= idle_for:
            stop.set()
            return
        await asyncio.sleep(poll)


def _read_until_eof(stream, then: Callable[[], None]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read1(4096):
            pass
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        then()


@contextlib.contextmanager
def run_in_thread(config: SimConfig) -> Iterator[str]:
    """Run the simulator in a background thread's event loop; yields its base URL and stops it on exit."""
    config.validate()
    loop = new_event_loop()
    stop_holder: dict = {}
    started = threading.Event()
    result: dict = {}

    def ready(url: str) -> None:
        result["url"] = url
        started.set()

    async def main() -> None:
        stop_holder["stop"] = asyncio.Event()
        await serve(config, stop_holder["stop"], ready)

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # reported to the caller below
            result["error"] = e
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="ollama-locust-sim", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in result or "url" not in result:
        thread.join(5)
        raise SimStartError(f"simulator did not start: {result.get('error', 'timeout')}")
    try:
        yield result["url"]
    finally:
        loop.call_soon_threadsafe(stop_holder["stop"].set)
        thread.join(10)


@dataclass
class SimProcess:
    url: str
    pid: int
    proc: subprocess.Popen
    stderr_path: str


def parent_death(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that has the child get ``sig`` when the calling process dies, however it dies
    (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing), so no process outlives its launcher. Made in the
    parent, it knows the parent's pid: a parent that died between fork and exec (the kernel would never
    signal) gets the child ``sig`` at once."""
    parent = os.getpid()

    def preexec() -> None:
        if not sys.platform.startswith("linux"):
            return
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


@contextlib.contextmanager
def start_process(args: list[str] | tuple[str, ...] = (), *, timeout: float = 20.0, env: dict | None = None,
                  cpu: int | None = None, own_session: bool = False,
                  parent_death_signal: int | None = None, stop_with_launcher: bool = False) -> Iterator[SimProcess]:
    """Spawn ``python -m ollama_locust.simulator --port 0 ARGS``, wait for its listening line, terminate it on exit.

    ``cpu`` pins the child to one CPU (Linux). ``own_session``: a session of its own, so a Ctrl-C or
    hang-up of the terminal does not reach it (the caller stops it, after its load). ``parent_death_signal``:
    sent to it when the caller dies (Linux). ``stop_with_launcher``: the child stops by itself once the
    caller has died (its standard input, a pipe the caller holds, closes) and no connection is open, so a
    caller killed before it could stop the child leaves nothing behind. Raises SimStartError if it exits
    or stays silent.
    """
    stderr_file = tempfile.NamedTemporaryFile(prefix="ollama-locust-sim-", suffix=".stderr", delete=False)
    cmd = [sys.executable, "-m", "ollama_locust.simulator", "--port", "0", *args,
           *(["--stop-on-stdin-eof"] if stop_with_launcher else [])]
    on_parent_death = parent_death(parent_death_signal) if parent_death_signal is not None else None

    def preexec() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if on_parent_death is not None:
            on_parent_death()

    needed = cpu is not None or parent_death_signal is not None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file,
                            stdin=subprocess.PIPE if stop_with_launcher else subprocess.DEVNULL,
                            env=env, text=True, bufsize=1, preexec_fn=preexec if needed else None,
                            start_new_session=own_session)
    try:
        url = _wait_for_url(proc, timeout, stderr_file.name)
        yield SimProcess(url=url, pid=proc.pid, proc=proc, stderr_path=stderr_file.name)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                pipe.close()
        stderr_file.close()


def _wait_for_url(proc: subprocess.Popen, timeout: float, stderr_path: str) -> str:
    box: dict = {}

    def reader() -> None:
        line = proc.stdout.readline()
        box["line"] = line
        for _ in proc.stdout:  # keep draining so the child never blocks on a full pipe
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while "line" not in box and time.monotonic() < deadline:
        time.sleep(0.02)
    line = box.get("line", "")
    if line.startswith(LISTENING_PREFIX):
        return line[len(LISTENING_PREFIX):].split(" ", 1)[0].strip()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    with open(stderr_path, encoding="utf-8", errors="replace") as f:
        err = f.read().strip().splitlines()
    why = err[-1] if err else ("no output" if not line else line.strip())
    raise SimStartError(f"simulator process did not start within {timeout:g} s "
                        f"(exit code {proc.returncode}): {why}")


def config_for_tests(**overrides) -> SimConfig:
    """A SimConfig on a free port with the instant profile unless overridden."""
    return replace(SimConfig(port=0, profile="instant"), **overrides)
