"""docker-compose.yml, .env.example, the Dockerfile and docs/deploy.md agree with each other and with
the project's CLI; checked without a Docker engine (this machine has none)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

from tests.e2e.deploy import compose
from tests.e2e.deploy.gateway import CONFIG, nginx_binary, placeholders, render

REPO = compose.REPO
DOCS = REPO / "docs" / "deploy.md"
OUTPUT_DIRS = {"runs"}  # mounted for output; created by compose, ignored by git
# Our image's programs; other images' commands (ollama pull) are theirs to parse.
OUR_PROGRAMS = {"locust", "ollama-locust"}


def documents():
    """The compose file interpolated with .env.example, and with no .env at all (defaults only)."""
    raw = compose.load()
    return {"env.example": compose.interpolate(raw, compose.env_file()), "defaults": compose.interpolate(raw, {})}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}


def test_validates_against_the_compose_specification():
    if not compose.SPEC.exists():
        pytest.fail(f"Compose specification schema not found at {compose.SPEC} "
                    "(the shared/ folder must sit beside the checkout)")
    schema = json.loads(compose.SPEC.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the spec says draft-07 (its $schema URL lacks the '#')
    validator.validate(compose.load())
    for document in documents().values():
        validator.validate(document)


def test_services_and_profiles():
    services = compose.load()["services"]
    assert {"ollama", "ollama-pull", "gateway", "locust-master", "locust-worker", "sim", "step"} <= set(services)
    assert services["sim"]["profiles"] == ["sim"] and services["step"]["profiles"] == ["step"]
    assert services["ollama"]["profiles"] == services["ollama-pull"]["profiles"] == ["ollama"]
    assert "ollama" in services["sim"]["networks"]["default"]["aliases"]  # replaces Ollama under its name
    assert services["ollama"]["healthcheck"]["test"][-2:] == ["ollama", "list"]
    assert services["ollama-pull"]["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert "${MODEL" in " ".join(services["ollama-pull"]["command"])
    for name in ("OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE", "OLLAMA_KEEP_ALIVE", "OLLAMA_NUM_THREAD"):
        assert f"${{{name}" in services["ollama"]["environment"][name]
    assert "COMPOSE_PROFILES" in compose.env_file() and compose.env_file()["COMPOSE_PROFILES"] == "ollama"


def test_every_referenced_file_exists():
    for document in documents().values():
        for name, service in document["services"].items():
            build = service.get("build")
            if build is not None:
                context = REPO / (build if isinstance(build, str) else build.get("context", "."))
                dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
                assert dockerfile.is_file(), (name, dockerfile)
            for volume in service.get("volumes", []):
                source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
                if not source.startswith((".", "/")):
                    continue  # a named volume
                path = (REPO / source).resolve()
                if path.name in OUTPUT_DIRS:
                    continue
                assert path.exists(), (name, volume)
            argv = compose.command_argv(service.get("command") or [])
            if argv[:1] == ["locust"] and "-f" in argv:
                assert (REPO / argv[argv.index("-f") + 1]).is_file(), (name, argv)
    # Everything the Dockerfile copies is in the repository.
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), line


def our_commands():
    seen = []
    for label, document in documents().items():
        for name, service in document["services"].items():
            argv = compose.command_argv(service.get("command") or [])
            if argv and argv[0] in OUR_PROGRAMS:
                assert "build" in service, f"{name} runs {argv[0]} but is not built from this project's Dockerfile"
                seen.append((f"{name}[{label}]", argv))
    return seen


COMMANDS = our_commands()


def test_the_load_services_run_our_cli():
    names = {label.split("[")[0] for label, _ in COMMANDS}
    assert names == {"locust-master", "locust-worker", "sim", "step"}


@pytest.mark.parametrize("label,argv", COMMANDS, ids=[label for label, _ in COMMANDS])
def test_command_parses_with_the_project_cli(label, argv):
    # Strictly (unknown options are errors) ...
    check = subprocess.run([sys.executable, "-m", "tests.e2e.deploy.cli_check", *argv], cwd=REPO, env=clean_env(),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"{label}: {' '.join(argv)}\n{check.stderr[-2000:]}"
    # ... and the same command line with --help appended, as the program itself runs it.
    program = [sys.executable, "-m", "locust"] if argv[0] == "locust" else [sys.executable, "-m", "ollama_locust"]
    helped = subprocess.run([*program, *argv[1:], "--help"], cwd=REPO, env=clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0, f"{label}: {helped.stderr[-2000:]}"
    assert "Traceback" not in helped.stdout + helped.stderr


def test_locustfile_help():
    result = subprocess.run([sys.executable, "-m", "locust", "-f", "locustfile.py", "--help"], cwd=REPO,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr


def all_env_names() -> set[str]:
    raw = compose.load()
    names = compose.variables()
    for service in raw["services"].values():
        environment = service.get("environment") or {}
        names |= set(environment) if isinstance(environment, dict) else {e.split("=")[0] for e in environment}
    return names


def test_every_env_var_is_documented():
    docs = DOCS.read_text()
    example = compose.ENV_EXAMPLE.read_text()
    names = all_env_names()
    assert {"MODEL", "MASTER_HOST", "OLLAMA_NUM_PARALLEL", "GATEWAY_MAX_CONN"} <= names
    for name in sorted(names):
        assert re.search(rf"\b{name}\b", docs), f"{name} is not documented in docs/deploy.md"
        assert re.search(rf"\b{name}\b", example), f"{name} is not in .env.example"
    # ... and .env.example holds nothing compose does not use.
    unused = set(compose.env_file()) - names - {"COMPOSE_PROFILES"}
    assert not unused, f".env.example sets variables docker-compose.yml never uses: {sorted(unused)}"


def test_gateway_placeholders_are_all_set_by_compose():
    gateway = compose.load()["services"]["gateway"]
    assert gateway["volumes"] == ["./gateway/nginx.conf:/etc/nginx/templates/nginx.conf.template:ro"]
    assert gateway["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert placeholders() == {"OLLAMA_UPSTREAM", "GATEWAY_LISTEN", "GATEWAY_MAX_CONN", "GATEWAY_RATE", "GATEWAY_BURST"}
    assert placeholders() <= set(gateway["environment"])


def test_gateway_config_as_compose_renders_it_passes_nginx_t(tmp_path):
    environment = compose.interpolate(compose.load(), compose.env_file())["services"]["gateway"]["environment"]
    # Inside compose the upstream is the service name; nginx -t must resolve it, so use loopback here.
    values = {name: environment[name] for name in placeholders()} | {"OLLAMA_UPSTREAM": "127.0.0.1:11434"}
    text = render(values)
    assert "${" not in text
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    for directive in ("limit_conn_status 429;", "limit_req_status 429;", "proxy_buffering off;",
                      "proxy_http_version 1.1;", "proxy_read_timeout 600s;", "keepalive 32;"):
        assert directive in text
    result = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "e.log"),
                             "-g", f"pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'e.log'};"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
