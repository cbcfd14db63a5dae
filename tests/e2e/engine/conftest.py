"""A real inference engine for the tests: llama.cpp (llama-cpp-python's server) with a model we write.

Fixtures (session-scoped, so the model is written and the server started once per test run):

- ``tiny_model``: ``Path`` of a freshly written ``scripts/tiny_gguf.py --size test`` model (seed 0).
- ``llama_server``: base URL (``http://127.0.0.1:PORT``, no trailing slash) of
  ``python -m llama_cpp.server`` serving ``tiny_model``; the OpenAI-compatible API is under ``/v1``.
- ``llama_model``: the model id the server reports in ``/v1/models`` (send it as ``"model"``).
- ``llama_server_log``: ``Path`` of the server's output (stdout and stderr).

The real model (``real_model.py``):

- ``gemma_model``: ``Path`` of Gemma 3 270M, assembled once from its PyPI package into the project's cache
  (SHA256 checked).
- ``gemma_server``: factory ``gemma_server(parallel, *extra_flags) -> LlamaServer`` of the C++
  ``llama-server`` serving it (``--no-jinja --chat-template gemma``, ``-c`` = parallel × 2048, 1 thread,
  ``--metrics``); one server per distinct argument list for the session, stopped at its end.

Tests that need another model or other flags use ``llama_engine.start_llama_server()`` (a context
manager) and ``llama_engine.write_tiny_model()`` directly. Without llama-cpp-python / gguf installed
(``bash scripts/test.sh`` installs them) the engine tests are skipped, with that reason in the summary.
"""

from __future__ import annotations

from pathlib import Path
import contextlib
from typing import Iterator

import pytest

from cpp_server import require_binary, start_cpp_server
from llama_engine import ENGINE_MISSING, LlamaServer, start_llama_server, write_tiny_model
from real_model import ALIAS, CTX_PER_SLOT, SERVE_FLAGS, THREADS, assemble_model


@pytest.fixture(scope="session")
def gemma_model() -> Path:
    return assemble_model()


@pytest.fixture(scope="session")
def gemma_server(gemma_model, tmp_path_factory):
    binary = require_binary()
    servers: dict[tuple, LlamaServer] = {}
    with contextlib.ExitStack() as stack:
        def start(parallel: int, *extra: str, serve_flags: tuple[str, ...] = SERVE_FLAGS) -> LlamaServer:
            key = (parallel, *serve_flags, *extra)
            if key not in servers:
                log_path = tmp_path_factory.mktemp("gemma-server") / "llama-server.log"
                try:
                    servers[key] = stack.enter_context(start_cpp_server(
                        gemma_model, log_path, *serve_flags, "--metrics", *extra, binary=binary,
                        parallel=parallel, threads=THREADS, ctx_per_slot=CTX_PER_SLOT, alias=ALIAS))
                except RuntimeError as exc:
                    pytest.fail(str(exc), pytrace=False)
            return servers[key]
        yield start


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("engine") / "tiny-test.gguf")


@pytest.fixture(scope="session")
def _llama_server(tiny_model, tmp_path_factory) -> Iterator[LlamaServer]:
    pytest.importorskip("llama_cpp", reason=ENGINE_MISSING)
    pytest.importorskip("llama_cpp.server.app", reason=ENGINE_MISSING)
    log_path = tmp_path_factory.mktemp("engine-log") / "llama-server.log"
    try:
        with start_llama_server(tiny_model, log_path) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def llama_server(_llama_server) -> str:
    return _llama_server.url


@pytest.fixture(scope="session")
def llama_model(_llama_server) -> str:
    return _llama_server.model


@pytest.fixture(scope="session")
def llama_server_log(_llama_server) -> Path:
    return _llama_server.log_path
