"""Start llama.cpp's server and write the tiny model: helpers behind the fixtures in conftest.py.

Importable from tests in this folder (``from llama_engine import start_llama_server``) for tests that
need another model size or other server flags than the session fixtures give.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]
WRITER = ROOT / "scripts" / "tiny_gguf.py"
MODEL_ALIAS = "tiny-llama"
START_TIMEOUT_S = 60.0
ENGINE_MISSING = ("the engine extra (llama-cpp-python[server], gguf) is not installed: "
                  "run bash scripts/test.sh")
_LISTENING = re.compile(r"Uvicorn running on (http://[\d.]+:\d+)")


def load_writer():
    """Import ``scripts/tiny_gguf.py`` by path (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("tiny_gguf", WRITER)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tiny_gguf", module)
    spec.loader.exec_module(module)
    return module


def write_tiny_model(path: Path, size: str = "test", seed: int = 0) -> Path:
    pytest.importorskip("gguf", reason=ENGINE_MISSING)
    return load_writer().write_model(path, size=size, seed=seed)


def server_command(model: Path, *extra: str) -> list[str]:
    """The server's command line. Port 0: the OS picks a free port, uvicorn logs which one."""
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", "0",
        # Without this, every new request cuts off the stream that is running.
        "--interrupt_requests", "False",
        "--n_ctx", "2048",
        *extra,
    ]


@dataclass(frozen=True)
class LlamaServer:
    url: str  # http://127.0.0.1:PORT
    model: str  # the id /v1/models reports
    log_path: Path
    process: subprocess.Popen


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@contextlib.contextmanager
def start_llama_server(model: Path, log_path: Path, *extra: str,
                       timeout_s: float = START_TIMEOUT_S) -> Iterator[LlamaServer]:
    """Start the server, wait until ``/v1/models`` answers, yield it, terminate it.

    Its output goes straight to ``log_path`` (no pipe to drain). Raises ``RuntimeError`` with the
    log's tail when the server exits early or does not answer within ``timeout_s``.
    """
    with run_server(server_command(model, *extra), log_path, name="llama_cpp.server", listening=_LISTENING,
                    timeout_s=timeout_s) as server:
        yield server


@contextlib.contextmanager
def run_server(command: list[str], log_path: Path, *, name: str, listening: re.Pattern,
               ready_paths: tuple[str, ...] = (), timeout_s: float = START_TIMEOUT_S) -> Iterator[LlamaServer]:
    """Start an OpenAI-compatible server process, yield it once it answers, terminate it.

    Its output goes straight to ``log_path`` (no pipe to drain); ``listening`` finds its URL there.
    It is ready when every path of ``ready_paths`` answers 2xx and ``/v1/models`` names a model.
    Raises ``RuntimeError`` with the log's tail when it exits early or is not ready within ``timeout_s``.
    """
    import httpx

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        url = model_id = None
        last_error = f"no {listening.pattern!r} line yet"
        while model_id is None:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} "
                                   f"before answering; log {log_path}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not ready within {timeout_s:.0f} s "
                                   f"({last_error}); log {log_path}:\n{_tail(log_path)}")
            if url is None:
                found = listening.search(log_path.read_text(errors="replace"))
                url = found.group(1) if found else None
            if url is not None:
                try:
                    for path in ready_paths:
                        httpx.get(url + path, timeout=2.0, trust_env=False).raise_for_status()
                    response = httpx.get(url + "/v1/models", timeout=2.0, trust_env=False)
                    response.raise_for_status()
                    model_id = response.json()["data"][0]["id"]
                except (httpx.HTTPError, ValueError, LookupError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
            if model_id is None:
                time.sleep(0.05)
        yield LlamaServer(url=url, model=model_id, log_path=log_path, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
