"""llama.cpp's C++ server (``llama-server``) for the tests: find the binary, start it, wait for it.

``scripts/build_llama_server.sh`` builds the binary once from the llama-cpp-python sdist (the same
llama.cpp as the Python server) and caches it outside the checkout; ``bash scripts/test.sh`` runs it and
exports ``OLLAMA_LOCUST_LLAMA_SERVER`` with the path. See docs/engine.md.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

from llama_engine import MODEL_ALIAS, LlamaServer, run_server

VERSION = "0.3.36"  # llama-cpp-python's sdist the binary is built from (= the engine extra's version)
ENV_VAR = "OLLAMA_LOCUST_LLAMA_SERVER"
START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def default_binary() -> Path:
    """Where scripts/build_llama_server.sh puts the binary."""
    cache = os.environ.get("OLLAMA_LOCUST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ollama-locust")
    return Path(cache) / f"llama-server-{VERSION}" / "llama-server"


def require_binary() -> Path:
    """The binary, or skip (no build configured) / fail (scripts/test.sh said where it is, and it is not)."""
    import pytest

    binary, why = find_binary()
    if binary is None:
        if os.environ.get(ENV_VAR):  # scripts/test.sh built it and said where: missing is a failure
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return binary


def find_binary() -> tuple[Path | None, str]:
    """``(path, "")`` of a runnable binary, or ``(None, why)``.

    ``$OLLAMA_LOCUST_LLAMA_SERVER`` when set (scripts/test.sh sets it), else the build script's cache.
    """
    configured = os.environ.get(ENV_VAR)
    path = Path(configured) if configured else default_binary()
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    source = f"${ENV_VAR}" if configured else "the build cache"
    return None, f"no llama-server binary at {path} ({source}): run bash scripts/build_llama_server.sh"


def server_command(binary: Path, model: Path, *extra: str, parallel: int = 2, ctx_per_slot: int = 2048,
                   threads: int = 1, alias: str = MODEL_ALIAS) -> list[str]:
    """``-c`` is the whole KV cache, shared out between the slots: ``parallel`` × ``ctx_per_slot``."""
    return [
        str(binary),
        "--model", str(model),
        "--alias", alias,
        "--host", "127.0.0.1",
        "--port", "0",  # the OS picks; the log says "listening on http://127.0.0.1:PORT"
        "--parallel", str(parallel),
        "--ctx-size", str(parallel * ctx_per_slot),
        "--threads", str(threads),
        "--no-webui",
        *extra,
    ]


@contextlib.contextmanager
def start_cpp_server(model: Path, log_path: Path, *extra: str, binary: Path | None = None,
                     parallel: int = 2, threads: int = 1, ctx_per_slot: int = 2048, alias: str = MODEL_ALIAS,
                     timeout_s: float = START_TIMEOUT_S) -> Iterator[LlamaServer]:
    """Start ``llama-server``, wait until ``/health`` is ok and ``/v1/models`` answers, yield, terminate.

    Raises ``RuntimeError`` with the log's tail when it exits early or is not ready within ``timeout_s``.
    """
    if binary is None:
        binary, why = find_binary()
        if binary is None:
            raise RuntimeError(why)
    # /health answers 503 {"error": {"message": "Loading model"}} until the model is loaded
    command = server_command(binary, model, *extra, parallel=parallel, threads=threads, ctx_per_slot=ctx_per_slot,
                             alias=alias)
    with run_server(command, log_path,
                    name="llama-server", listening=_LISTENING, ready_paths=("/health",),
                    timeout_s=timeout_s) as server:
        yield server
