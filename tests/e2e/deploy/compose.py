"""Reading docker-compose.yml the way `docker compose` does, for the tests (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# The Compose specification schema lives beside the checkout (../shared/ from the repository root).
SPEC = REPO.parent / "shared" / "compose-spec.json"

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def load() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def variables(text: str | None = None) -> set[str]:
    """Names used in ${NAME}, ${NAME:-default}, $NAME interpolations ($$ is a literal $)."""
    text = COMPOSE_FILE.read_text() if text is None else text
    names = set()
    for match in _VAR.finditer(text):
        body = match.group("braced") or match.group("bare")
        name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", body or "")
        if name:
            names.add(name.group(0))
    return names


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation over a loaded document: ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e}, $V, $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match):
        if match.group(0) == "$$":
            return "$"
        body = match.group("braced") if match.group("braced") is not None else match.group("bare")
        found = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])(.*))?$", body, re.S)
        if not found:
            raise ValueError(f"bad interpolation ${{{body}}}")
        name, colon, op, arg = found.groups()
        current = env.get(name)
        unset = current is None or (colon == ":" and current == "")
        if op == "-":
            return arg if unset else current
        if op == "?" and unset:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return current or ""

    return _VAR.sub(one, value)


def command_argv(command) -> list[str]:
    """A service's command as argv (the string form is split like a shell would, without one)."""
    return list(command) if isinstance(command, list) else shlex.split(command)
