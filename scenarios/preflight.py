"""Before any user starts: is the target there, is it what we think, is the model on it? And one
warm-up request, whose cold-start time the report keeps (excluded from the results).

Every problem becomes one :class:`PreflightError` line that says what failed and what to do.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ollama_locust import contract
from ollama_locust.scenarios import secrets


NO_HOST = "no target host: give --host (e.g. http://127.0.0.1:11434)"


class PreflightError(Exception):
    """The target cannot be load-tested as asked (one line)."""


@dataclass
class TargetInfo:
    server_version: str | None = None
    models: list[str] = field(default_factory=list)


def _same_model(wanted: str, available: str) -> bool:
    def norm(name: str) -> str:
        return name if ":" in name else name + ":latest"

    return norm(wanted) == norm(available)


def api_key(env_var: str) -> str | None:
    """The bearer key for openai/gateway APIs: read from the environment only, never from options."""
    key = os.environ.get(env_var) or None if env_var else None
    secrets.register(key)  # masked in everything stored from now on
    return key


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self):
        return json.loads(self.body)


def _request(url: str, *, headers: dict, timeout: float, payload: dict | None = None) -> Answer:
    """One HTTP exchange with the standard library (safe under gevent's monkey-patching, unlike
    httpx whose optional trio backend breaks on a patched ``select``). Errors become PreflightError."""
    host = url.split("/", 3)[:3]
    host = "/".join(host)
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers.get("content-type", "?"), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.get("content-type", "?") if error.headers else "?", error.read() or b"")
    except (socket.timeout, TimeoutError):
        raise PreflightError(f"{host} did not answer within {timeout:g} s; is it overloaded or the wrong address?") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        text = "connection refused" if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower() else str(reason)
        raise PreflightError(f"cannot reach {host} ({text}); start Ollama (or your gateway) or run 'ollama-locust sim'") from None


def _json(answer: Answer, host: str, path: str):
    kind = answer.content_type.split(";")[0]
    what = "Ollama" if path.startswith("/api") else "an OpenAI-compatible server"
    if answer.status != 200:
        raise PreflightError(f"{host} does not look like {what}: GET {path} answered HTTP {answer.status} ({kind}); check --host and --api")
    try:
        return answer.json()
    except ValueError:
        raise PreflightError(f"{host} does not look like {what}: GET {path} answered {kind}, not JSON; check --host and --api") from None


def check_target(host: str, model: str, api: str, *, key: str | None = None, timeout: float = 10.0) -> TargetInfo:
    host = host.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    info = TargetInfo()

    def get(path: str) -> Answer:
        return _request(host + path, headers=headers, timeout=timeout)

    if api == "gateway":
        get("/")  # reachable is all we can know of an app gateway
        return info
    if api in contract.OLLAMA_NATIVE_APIS:
        body = _json(get("/api/tags"), host, "/api/tags")
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise PreflightError(f"{host} does not look like Ollama: /api/tags has no 'models' list; check --host and --api")
        info.models = [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]
        version = get("/api/version")
        if version.status == 200:
            try:
                info.server_version = version.json().get("version")
            except (ValueError, AttributeError):
                pass
    else:
        body = _json(get("/v1/models"), host, "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise PreflightError(f"{host} does not look like an OpenAI-compatible server: /v1/models has no 'data' list")
        info.models = [str(m.get("id")) for m in data if isinstance(m, dict)]
    if not any(_same_model(model, name) for name in info.models):
        available = ", ".join(info.models) if info.models else "none (pull one first: ollama pull MODEL)"
        raise PreflightError(f"model '{model}' not found at {host}; available: {available}")
    return info


def warm_up(host: str, model: str, api: str, *, key: str | None = None, timeout: float = 600.0) -> dict:
    """One tiny request so the model is loaded before the first step; returns what it cost.

    Not part of the results: a cold start is a finding of its own (``run.json`` ``warmup``).
    """
    host = host.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if api in contract.OLLAMA_NATIVE_APIS:
        path, payload = "/api/generate", {"model": model, "prompt": "Hello", "stream": False, "options": {"num_predict": 1}}
    elif api == "openai":
        path, payload = "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1}
    else:
        return {"outcome": "skipped", "e2e_ms": None, "load_ms": None, "error": "no warm-up through an app gateway"}
    started = time.perf_counter()
    try:
        answer = _request(host + path, headers=headers, timeout=timeout, payload=payload)
    except PreflightError as error:
        return {"outcome": "error", "e2e_ms": None, "load_ms": None, "error": str(error)}
    e2e_ms = (time.perf_counter() - started) * 1000.0
    result = {"outcome": "ok" if answer.status == 200 else "http_error", "e2e_ms": round(e2e_ms, 3), "load_ms": None, "error": ""}
    if answer.status != 200:
        result["error"] = secrets.mask(f"HTTP {answer.status}: {answer.body[:4096].decode(errors='replace')}")[:200]
        return result
    try:
        body = answer.json()
    except ValueError:
        return result
    if isinstance(body, dict) and body.get("load_duration") is not None:
        result["load_ms"] = round(body["load_duration"] / 1e6, 3)
    return result
