"""Before any user starts: is the target there, is it what we think, is the model on it? And one
warm-up request, whose cold-start time the report keeps (excluded from the results), then the
prompt check: two prompts of clearly different lengths must not get the same prompt token count
(a server that counts the same for both is not seeing the prompt: a chat template problem).

Every problem becomes one :class:`PreflightError` line that says what failed and what to do.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
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
    location: str | None = None  # of a redirect (not followed)

    def json(self):
        return json.loads(self.body)


MAX_ANSWER = 16 << 20  # bytes of one preflight answer kept (a longer one is refused)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (nor by the load: one behaviour everywhere), so a key never goes elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _request(url: str, *, headers: dict, timeout: float, payload: dict | None = None) -> Answer:
    """One HTTP exchange with the standard library (safe under gevent's monkey-patching, unlike
    httpx whose optional trio backend breaks on a patched ``select``), bounded in time (the whole
    exchange, under gevent) and size. Redirects are not followed. Every failure becomes one PreflightError."""
    host = url.split("/", 3)[:3]
    host = "/".join(host)
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    deadline = _deadline(timeout)
    try:
        if deadline is not None:
            deadline.start()
        try:
            with _opener.open(request, timeout=timeout) as response:
                return Answer(response.status, response.headers.get("content-type", "?"), _read(response, host))
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, error.headers.get("content-type", "?") if error.headers else "?", _read(error, host))
            answer.location = error.headers.get("location") if error.headers else None
            return answer
    except PreflightError:
        raise
    except BaseException as error:
        if deadline is not None and error is deadline or isinstance(error, (socket.timeout, TimeoutError)):
            raise PreflightError(f"{host} did not answer within {timeout:g} s; is it overloaded or the wrong address?") from None
        if isinstance(error, (http.client.HTTPException, ValueError)):  # an SSH banner, a reply cut after its headers
            raise PreflightError(f"{host} does not speak HTTP as expected ({_http_failure(error)}); check --host (scheme and port)") from None
        if not isinstance(error, (urllib.error.URLError, OSError)):
            raise
        reason = getattr(error, "reason", error)
        if isinstance(reason, http.client.HTTPException):
            raise PreflightError(f"{host} does not speak HTTP as expected ({_http_failure(reason)}); check --host (scheme and port)") from None
        text = "connection refused" if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower() else str(reason)
        raise PreflightError(f"cannot reach {host} ({text}); start Ollama (or your gateway) or run 'ollama-locust sim'") from None
    finally:
        if deadline is not None:
            deadline.close()


def _deadline(timeout: float):
    """A gevent.Timeout for the whole exchange when gevent runs (the load processes), else None."""
    try:
        import gevent
    except ImportError:  # pragma: no cover - gevent is a dependency
        return None
    return gevent.Timeout(timeout) if timeout and timeout > 0 else None


def _read(response, host: str) -> bytes:
    length = (response.headers.get("content-length") or "") if response.headers else ""
    if length.isdigit() and int(length) <= MAX_ANSWER:
        return response.read() or b""  # http.client raises IncompleteRead when the reply is cut short
    body = response.read(MAX_ANSWER + 1) or b""
    if len(body) > MAX_ANSWER:
        raise PreflightError(f"{host} answered more than {MAX_ANSWER} bytes; check --host")
    return body


def _http_failure(error: BaseException) -> str:
    if isinstance(error, http.client.IncompleteRead):
        more = f", {error.expected} more were announced" if error.expected is not None else ""
        return f"the connection closed after {len(error.partial)} bytes of the reply body{more}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the connection closed without a reply"
    if isinstance(error, http.client.BadStatusLine):
        line = " ".join(str(error.line if hasattr(error, "line") else error).split())[:60]
        return f"not an HTTP status line: {line!r}"
    return " ".join(f"{type(error).__name__}: {error}".split())[:120]


def redirect_message(host: str, what: str, status: int, location: str | None) -> str:
    """The one line for a redirect: not followed (anywhere), so the user gives the final address."""
    where = f" to {secrets.redact_url(location)}" if location else ""
    return (f"{host}: {what} answered HTTP {status} (a redirect{where}); redirects are not followed, "
            "so credentials never go to another address: give the final URL as --host")


def _json(answer: Answer, host: str, path: str):
    kind = answer.content_type.split(";")[0]
    what = "Ollama" if path.startswith("/api") else "an OpenAI-compatible server"
    if 300 <= answer.status < 400:
        raise PreflightError(redirect_message(host, f"GET {path}", answer.status, answer.location))
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
    except PreflightError as error:  # no HTTP answer at all: the load could get none either
        raise PreflightError(f"the warm-up request failed: {error} (--skip-warmup to run anyway)") from None
    if 300 <= answer.status < 400:
        raise PreflightError(redirect_message(host, f"POST {path}", answer.status, answer.location))
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


SHORT_PROMPT = "Hi."
LONG_PROMPT = ("Please read this whole paragraph before you answer: a class of twenty-eight students shares one "
               "small school server, and each of them asks about photosynthesis, the French revolution, prime "
               "numbers, the water cycle and how to write a good essay, one after the other, all afternoon. "
               "In one word, which of these topics is about plants?")
PROMPT_CHECK_TOKENS = 1


def _prompt_tokens(host: str, model: str, api: str, prompt: str, headers: dict, timeout: float) -> int | None:
    """The server's prompt token count for one tiny request, or None when it reports none."""
    if api in contract.OLLAMA_NATIVE_APIS:
        path = "/api/chat"
        payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": False,
                   "options": {"num_predict": PROMPT_CHECK_TOKENS}}
    else:
        path = "/v1/chat/completions"
        payload = {"model": model, "messages": [{"role": "user", "content": prompt}],
                   "max_tokens": PROMPT_CHECK_TOKENS}
    try:
        answer = _request(host + path, headers=headers, timeout=timeout, payload=payload)
    except PreflightError:  # a timeout or a dropped connection here is a finding of the run, not of this check
        return None
    if answer.status != 200:
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    count = body.get("prompt_eval_count") if api in contract.OLLAMA_NATIVE_APIS else (body.get("usage") or {}).get("prompt_tokens")
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def check_prompt_seen(host: str, model: str, api: str, *, key: str | None = None, timeout: float = 120.0) -> dict:
    """Ask two prompts of clearly different lengths (max 1 output token) and compare the server's prompt
    token counts: ``{"short": n, "long": m}`` (None where the server reports none; nothing is sent through
    an app gateway). Raises PreflightError (one line) when both counts are the same: the server is not
    seeing the prompt — seen with llama-server ``--jinja --chat-template gemma``, which makes the literal
    word "gemma" the whole prompt (3 tokens for every request, answers unrelated to the questions).
    """
    if api not in (*contract.OLLAMA_NATIVE_APIS, "openai"):
        return {"short": None, "long": None}
    host = host.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # A fresh tag in front of both: a server's prompt cache (Ollama's, from an earlier run) cannot hold
    # either prompt, so what it counts is what it evaluated for this text.
    tag = f"({uuid.uuid4().hex[:8]}) "
    short = _prompt_tokens(host, model, api, tag + SHORT_PROMPT, headers, timeout)
    long = _prompt_tokens(host, model, api, tag + LONG_PROMPT, headers, timeout) if short is not None else None
    if short is not None and long is not None and long == short:
        raise PreflightError(
            f"the server is not seeing the prompt: a {len(SHORT_PROMPT.split())}-word and a "
            f"{len(LONG_PROMPT.split())}-word prompt both counted {short} prompt tokens at {host} (a chat template "
            "problem? llama-server: --no-jinja --chat-template NAME, or the model's own template); "
            "--skip-preflight runs anyway")
    return {"short": short, "long": long}
