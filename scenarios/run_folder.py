"""The run folder: where a run's files go, and run.json."""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time


class RunFolderError(OSError):
    """The run folder cannot be used (one line: which folder, why)."""


def default_path(label: str = "", parent: str = "runs", now: float | None = None) -> str:
    """``parent/<UTC time to the ms>Z-<label>-<4 random hex>``: two runs started in the same millisecond
    still get two folders (and :func:`create_unique` creates it exclusively)."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") if label else "run"
    return os.path.join(parent, f"{stamp}-{safe or 'run'}-{secrets.token_hex(2)}")


def create_unique(label: str = "", parent: str = "runs") -> str:
    """A new run folder under ``parent``, created exclusively (never one another run already uses)."""
    parent = os.path.abspath(parent)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        raise _not_writable(parent, error) from None
    for _attempt in range(20):
        path = default_path(label, parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as error:
            raise _not_writable(path, error) from None
        return prepare(path)
    raise RunFolderError(f"cannot create a new run folder in {parent}: every name tried exists")


def _not_writable(path: str, error: OSError) -> RunFolderError:
    return RunFolderError(f"run folder {path} is not writable ({error.strerror or error}); choose another with --out/--run-dir")


def prepare(path: str) -> str:
    """Create the folder (and parents) and make sure it is writable; returns the absolute path."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)  # a name of its own: no race
        os.close(descriptor)
        os.remove(probe)
    except OSError as error:
        raise _not_writable(path, error) from None
    return path


def write_json(path: str, data: dict) -> None:
    """Write atomically: a crash never leaves half a run.json."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 32 * 1024


def reserve(path: str, size: int = RESERVE_BYTES) -> str | None:
    """Hold ``size`` bytes of the run folder's disk in a file, freed by :func:`release` when the disk is
    full, so that run.json and the report of what ran still fit. None when even that cannot be written."""
    file = os.path.join(path, RESERVE_FILE)
    try:
        with open(file, "wb") as handle:
            handle.write(b"\0" * size)
        return file
    except OSError:
        release(file)
        return None


def release(file: str | None) -> None:
    if file:
        try:
            os.remove(file)
        except OSError:
            pass
