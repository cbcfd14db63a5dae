"""Before any user starts: is the target there, is it what we think, is the model on it? And one
warm-up request, whose cold-start time the report keeps (excluded from the results).

Every problem becomes one :class:`PreflightError` line that says what failed and what to do.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import httpx

OLLAMA_APIS = ("ollama-chat", "ollama-generate")


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
    return os.environ.get(env_var) or None if env_var else None


def _get(client: httpx.Client, host: str, path: str) -> httpx.Response:
    try:
        return client.get(path)
    except httpx.ConnectError as error:
        reason = "connection refused" if "refused" in str(error).lower() else str(error) or "cannot connect"
        raise PreflightError(f"cannot reach {host} ({reason}); start Ollama (or your gateway) or run 'ollama-locust sim'") from None
    except httpx.TimeoutException:
        raise PreflightError(f"{host} did not answer within the preflight timeout; is it overloaded or the wrong address?") from None
    except httpx.HTTPError as error:
        raise PreflightError(f"cannot reach {host} ({error.__class__.__name__}: {error})") from None


def _json(response: httpx.Response, host: str, path: str):
    kind = response.headers.get("content-type", "?").split(";")[0]
    if response.status_code != 200:
        raise PreflightError(f"{host} does not look like {'Ollama' if path.startswith('/api') else 'an OpenAI-compatible server'}: GET {path} answered HTTP {response.status_code} ({kind}); check --host and --api")
    try:
        return response.json()
    except ValueError:
        raise PreflightError(f"{host} does not look like {'Ollama' if path.startswith('/api') else 'an OpenAI-compatible server'}: GET {path} answered {kind}, not JSON; check --host and --api") from None


def check_target(host: str, model: str, api: str, *, key: str | None = None, timeout: float = 10.0) -> TargetInfo:
    host = host.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    info = TargetInfo()
    with httpx.Client(base_url=host, timeout=timeout, headers=headers) as client:
        if api == "gateway":
            _get(client, host, "/")  # reachable is all we can know of an app gateway
            return info
        if api in OLLAMA_APIS:
            body = _json(_get(client, host, "/api/tags"), host, "/api/tags")
            models = body.get("models") if isinstance(body, dict) else None
            if not isinstance(models, list):
                raise PreflightError(f"{host} does not look like Ollama: /api/tags has no 'models' list; check --host and --api")
            info.models = [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]
            version = _get(client, host, "/api/version")
            if version.status_code == 200:
                try:
                    info.server_version = version.json().get("version")
                except ValueError:
                    pass
        else:
            body = _json(_get(client, host, "/v1/models"), host, "/v1/models")
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
    if api in OLLAMA_APIS:
        path, payload = "/api/generate", {"model": model, "prompt": "Hello", "stream": False, "options": {"num_predict": 1}}
    elif api == "openai":
        path, payload = "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1}
    else:
        return {"outcome": "skipped", "e2e_ms": None, "load_ms": None, "error": "no warm-up through an app gateway"}
    started = time.perf_counter()
    try:
        response = httpx.post(host + path, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        return {"outcome": "error", "e2e_ms": None, "load_ms": None, "error": f"{error.__class__.__name__}: {error}"}
    e2e_ms = (time.perf_counter() - started) * 1000.0
    result = {"outcome": "ok" if response.status_code == 200 else "http_error", "e2e_ms": round(e2e_ms, 3), "load_ms": None, "error": ""}
    if response.status_code != 200:
        result["error"] = f"HTTP {response.status_code}: {response.text[:200]}"
        return result
    try:
        body = response.json()
    except ValueError:
        return result
    if isinstance(body, dict) and body.get("load_duration") is not None:
        result["load_ms"] = round(body["load_duration"] / 1e6, 3)
    return result
