"""The run folder: where a run's files go, and run.json."""

from __future__ import annotations

import json
import os
import re
import time


class RunFolderError(OSError):
    """The run folder cannot be used (one line: which folder, why)."""


def default_path(label: str = "", parent: str = "runs", now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") if label else "run"
    return os.path.join(parent, f"{stamp}-{safe or 'run'}")


def prepare(path: str) -> str:
    """Create the folder (and parents) and make sure it is writable; returns the absolute path."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w", encoding="utf-8") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise RunFolderError(f"run folder {path} is not writable ({error.strerror or error}); choose another with --out/--run-dir") from None
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
