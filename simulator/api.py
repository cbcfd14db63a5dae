"""Ollama's HTTP API on top of the engine: routes, request validation with Ollama's exact errors,
the NDJSON / SSE / JSON reply formats, fault injection and the truth log.

Errors are mapped at this boundary: every request ends as one response (or a deliberate drop) and
one truth-log line; nothing escapes to the connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import random
import socket
import time
from datetime import datetime, timezone

import orjson

from ollama_locust.simulator.config import SimConfig, normalize_model, parse_keep_alive
from ollama_locust.simulator.scheduler import DEFAULT_NUM_CTX, Busy, Job, LoadFailed, Scheduler
from ollama_locust.simulator.http import LAST_CHUNK, Conn, Request, chunk
from ollama_locust.simulator.text import (CHAT_TEMPLATE_TOKENS, GENERATE_TEMPLATE_TOKENS, content_text, count_prompt_tokens,
                            reply_length, reply_tokens)

JSON = b"application/json; charset=utf-8"
NDJSON = b"application/x-ndjson"
SSE = b"text/event-stream"
TEXT = b"text/plain; charset=utf-8"

RUNNER_CRASH = "llama runner process has terminated: exit status 2"
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
FAULT_OUTCOME = {"drop": "dropped", "error_line": "error"}
MODIFIED_AT = "2026-10-01T12:00:00.000000+00:00"

# family, parameter size, bytes on disk, context length of the architecture
CATALOGUE = {
    "llama3.2": ("llama", "3.2B", 2019393189, 131072),
    "llama3": ("llama", "8.0B", 4661224676, 8192),
    "llama3.1": ("llama", "8.0B", 4920753328, 131072),
    "qwen2.5": ("qwen2", "1.5B", 986061892, 32768),
    "gemma3": ("gemma3", "4.3B", 3338801804, 131072),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def go_json_error(text: str) -> str:
    """The message Go's encoding/json gives for a malformed body (close to it)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            return "unexpected EOF"
        ch = text[e.pos]
        where = {"Expecting value": "looking for beginning of value",
                 "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
                 "Expecting ':' delimiter": "after object key",
                 "Expecting ',' delimiter": "after object key:value pair",
                 "Extra data": "after top-level value"}.get(e.msg, "looking for beginning of value")
        return f"invalid character '{ch}' {where}"
    return "invalid request body"


def _dumps(obj) -> bytes:
    return orjson.dumps(obj)


def _iso_local(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="microseconds")


def _now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TruthLog:
    """One JSON line per request, flushed per line (see docs/simulator.md for the fields)."""

    def __init__(self, path: str):
        self.f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        self.f.write(orjson.dumps(rec).decode() + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class Faults:
    """Seeded per-request fault decisions, in arrival order."""

    KINDS = ("fail", "drop", "stall", "garbage", "error_line")

    def __init__(self, cfg: SimConfig):
        self.rng = random.Random(f"faults-{cfg.seed}")
        self.rates = {"fail": cfg.fail_rate, "drop": cfg.drop_rate, "stall": cfg.effective_stall_rate(),
                      "garbage": cfg.garbage_rate, "error_line": cfg.error_line_rate}
        self.any = any(self.rates.values())

    def pick(self) -> str | None:
        if not self.any:
            return None
        hit = None
        for kind in self.KINDS:  # one draw per kind keeps each rate independent of the others' settings
            if self.rng.random() < self.rates[kind] and hit is None:
                hit = kind
        return hit


class App:
    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.profile = cfg.timing()
        self.models = cfg.model_names()
        self.engine = None  # with --engine llama-cpp: real inference (simulator/llama_runner.py)
        if cfg.engine == "llama-cpp":
            from ollama_locust.simulator.llama_runner import LlamaEngine
            self.engine = LlamaEngine(cfg)
        self.sched = Scheduler(profile=self.profile, models=self.models, num_parallel=cfg.num_parallel,
                               max_queue=cfg.max_queue, default_keep_alive=cfg.keep_alive_seconds(),
                               strict_queue=cfg.strict_queue,
                               runner_factory=self.engine.runner if self.engine else None)
        self.truth = TruthLog(cfg.truth_log) if cfg.truth_log else None
        self.faults = Faults(cfg)
        self.next_id = 0
        self.connections = 0
        self.local_bind = _is_loopback(cfg.host)
        self.hostname = socket.gethostname().lower()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.truth:
            self.truth.close()

    # -- connection bookkeeping (for /_sim/stats) ----------------------------------------------
    def on_open(self, conn: Conn) -> None:
        self.connections += 1

    def on_close(self, conn: Conn) -> None:
        self.connections -= 1

    # -- dispatch ------------------------------------------------------------------------------
    async def handle(self, req: Request, conn: Conn) -> None:
        if self.local_bind and not self._host_allowed(req.headers.get("host", "")):
            conn.send(403, b"", TEXT)
            return
        m, path = req.method, req.path
        get = m in ("GET", "HEAD")
        head = m == "HEAD"
        if path == "/" and get:
            return conn.send(200, b"Ollama is running", TEXT, head_only=head)
        if path == "/api/version" and get:
            return conn.send(200, _dumps({"version": self.cfg.version_string}), head_only=head)
        if path == "/api/tags" and get:
            return conn.send(200, _dumps({"models": [self._model_entry(n) for n in self.models]}), head_only=head)
        if path == "/api/ps" and get:
            return conn.send(200, _dumps(self._ps()), head_only=head)
        if path == "/v1/models" and get:
            return conn.send(200, _dumps({"object": "list", "data": [self._oai_model(n) for n in self.models]}))
        if path.startswith("/v1/models/") and get:
            name = self._find_model(path[len("/v1/models/"):])
            if name is None:
                return self._error(conn, 404, f"model '{path[len('/v1/models/'):]}' not found", openai=True)
            return conn.send(200, _dumps(self._oai_model(name)))
        if path == "/_sim/stats" and get:
            return conn.send(200, _dumps(self._stats()))
        if path == "/_sim/stats/reset" and m == "POST":
            self.sched.stats.reset()
            return conn.send(200, b"{}")
        if m == "POST":
            if path == "/api/show":
                return self._show(req, conn)
            kind = {"/api/generate": "generate", "/api/chat": "chat", "/v1/chat/completions": "oai_chat",
                    "/v1/completions": "oai_completion"}.get(path)
            if kind:
                return await self._generation(req, conn, kind)
        conn.send(404, b"404 page not found", TEXT)

    def _host_allowed(self, host: str) -> bool:
        if not host:
            return True
        h = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
        h = h.lower()
        if h in ("localhost", self.hostname) or h.endswith((".localhost", ".local", ".internal")):
            return True
        try:
            return ipaddress.ip_address(h).is_loopback
        except ValueError:
            return False

    # -- models --------------------------------------------------------------------------------
    def _find_model(self, name: object) -> str | None:
        if not isinstance(name, str) or not name:
            return None
        n = normalize_model(name)
        return n if n in self.models else None

    def _details(self, name: str) -> tuple[dict, int, int]:
        if self.engine is not None:  # the model file's own figures
            i = self.engine.info
            return ({"parent_model": "", "format": "gguf", "family": i.family, "families": [i.family],
                     "parameter_size": i.parameter_size, "quantization_level": i.quantization_level},
                    i.size, i.context_length)
        family, params, size, ctx = CATALOGUE.get(name.split(":")[0].split("/")[-1], ("llama", "3.2B", 2019393189, 131072))
        details = {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                   "parameter_size": params, "quantization_level": "Q4_K_M"}
        return details, size, ctx

    def _model_entry(self, name: str) -> dict:
        details, size, _ = self._details(name)
        digest = self.engine.info.digest if self.engine is not None else hashlib.sha256(name.encode()).hexdigest()
        return {"name": name, "model": name, "modified_at": MODIFIED_AT, "size": size, "digest": digest,
                "details": details}

    def _ps(self) -> dict:
        out = []
        for r in sorted(self.sched.loaded(), key=lambda r: -r.expiry_wall()):
            e = self._model_entry(r.model)
            del e["modified_at"]
            exp = r.expiry_wall()
            e["expires_at"] = _iso_local(min(exp, time.time() + 9.2e9))
            on_gpu = self.engine is None and self.cfg.profile.startswith("gpu")  # the engine runs on the CPU
            e["size_vram"] = e["size"] if on_gpu else 0
            e["context_length"] = r.num_ctx
            out.append(e)
        return {"models": out}

    def _oai_model(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": 1759320000, "owned_by": "library"}

    def _show(self, req: Request, conn: Conn) -> None:
        try:
            body = self._json_body(req)
        except ApiError as e:
            return self._error(conn, e.status, e.message)
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(conn, 400, "model is required")
        model = self._find_model(name)
        if model is None:
            return self._error(conn, 404, f"model '{name}' not found")
        details, _, ctx = self._details(model)
        arch = details["family"]
        info = self.engine.info if self.engine is not None else None
        conn.send(200, _dumps({
            "license": "",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {info.path if info else model}\n",
            "parameters": "" if info else 'stop                           "<|eot_id|>"',
            "template": (info.chat_template or "{{ .Prompt }}") if info else "{{ .Prompt }}",
            "details": details,
            "model_info": {"general.architecture": arch,
                           "general.parameter_count": info.parameter_count if info else 3212749888,
                           f"{arch}.context_length": ctx,
                           f"{arch}.embedding_length": _int(info.metadata.get(f"{arch}.embedding_length"))
                           if info else 3072},
            "capabilities": ["completion"],
            "modified_at": MODIFIED_AT,
        }))

    # -- errors --------------------------------------------------------------------------------
    @staticmethod
    def _error(conn: Conn, status: int, message: str, openai: bool = False) -> None:
        if openai:
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        else:
            body = {"error": message}
        conn.send(status, _dumps(body))

    @staticmethod
    def _json_body(req: Request) -> dict:
        text = req.body.decode("utf-8", "replace")
        if not text.strip():
            raise ApiError(400, "missing request body")
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise ApiError(400, go_json_error(text)) from None
        if not isinstance(body, dict):
            raise ApiError(400, f"json: cannot unmarshal {_go_kind(body)} into Go value of type api.Request")
        return body

    # -- generation ----------------------------------------------------------------------------
    def _parse_generation(self, body: dict, kind: str) -> dict:
        """Validate a generation request; a dict of what the engine needs, or ApiError."""
        openai = kind.startswith("oai")
        model_raw = body.get("model", "")
        if not isinstance(model_raw, str):
            raise ApiError(400, f"json: cannot unmarshal {_go_kind(model_raw)} into Go struct field .model of type string")
        if kind == "oai_chat":
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise ApiError(400, f"{json.dumps(msgs) if isinstance(msgs, list) else 'None'} is too short - 'messages'"
                               if isinstance(msgs, list) or msgs is None else "messages must be a list")
        if not model_raw:
            if kind == "generate":
                raise ApiError(404, "model '' not found")
            raise ApiError(400, "model is required")
        model = self._find_model(model_raw)
        if model is None:
            raise ApiError(404, f"model '{model_raw}' not found")
        opts = body.get("options") or {}
        if not isinstance(opts, dict):
            raise ApiError(400, "json: cannot unmarshal options into Go struct field .options of type map[string]interface {}")
        if "keep_alive" in body and body["keep_alive"] is not None:
            try:
                keep_alive = parse_keep_alive(body["keep_alive"])
            except TypeError as e:
                raise ApiError(400, f"Unsupported type: '{e}'") from None
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        else:
            keep_alive = None
        num_predict = opts.get("num_predict", -1)
        seed = opts.get("seed", -1)
        fmt = body.get("format")
        if openai:
            stream = bool(body.get("stream", False))
            mt = body.get("max_completion_tokens", body.get("max_tokens"))
            num_predict = mt if isinstance(mt, int) else -1
            seed = body.get("seed", -1)
            rf = body.get("response_format") or {}
            if isinstance(rf, dict) and rf.get("type") == "json_object":
                fmt = "json"
            elif isinstance(rf, dict) and rf.get("type") == "json_schema":
                fmt = (rf.get("json_schema") or {}).get("schema") or "json"
        else:
            stream = body.get("stream", True) is not False
        if not isinstance(num_predict, int) or isinstance(num_predict, bool):
            num_predict = -1
        num_ctx = opts.get("num_ctx")
        num_ctx = num_ctx if isinstance(num_ctx, int) and num_ctx > 0 else DEFAULT_NUM_CTX
        # the prompt
        if kind in ("generate", "oai_completion"):
            prompt = body.get("prompt") or ""
            if isinstance(prompt, list):
                prompt = " ".join(str(p) for p in prompt)
            prompt = str(prompt)
            system = body.get("system") or ""
            key = f"{system}\n{prompt}" if system else prompt
            raw = bool(body.get("raw"))
            prompt_tokens = count_prompt_tokens(key) + (0 if raw else GENERATE_TEMPLATE_TOKENS)
            empty = not prompt
        else:
            msgs = body.get("messages") or []
            if not isinstance(msgs, list):
                raise ApiError(400, "json: cannot unmarshal messages into Go struct field .messages of type []api.Message")
            texts = [content_text(m.get("content")) if isinstance(m, dict) else "" for m in msgs]
            key = "\n".join(texts)
            prompt_tokens = sum(count_prompt_tokens(t) + CHAT_TEMPLATE_TOKENS for t in texts)
            prompt = texts[-1] if texts else ""
            empty = not msgs
        include_usage = bool(openai and isinstance(body.get("stream_options"), dict)
                             and body["stream_options"].get("include_usage"))
        return dict(model=model, echo=model_raw, stream=stream, keep_alive=keep_alive, num_predict=num_predict,
                    seed=seed if isinstance(seed, int) and seed != -1 else self.cfg.seed, fmt=fmt, num_ctx=num_ctx,
                    key=key, prompt=prompt, prompt_tokens=prompt_tokens, empty=empty, include_usage=include_usage)

    async def _generation(self, req: Request, conn: Conn, kind: str) -> None:
        # Ollama's durations count from the start of its handler (checkpointStart); the truth log's
        # arrival is when the request's bytes were read, before this handler task first ran, or, for a
        # request already waiting when its connection was accepted, when they reached the machine.
        arrival = time.monotonic()
        wall = time.time() - arrival  # monotonic -> unix time
        arrival_wall = wall + (req.arrived or arrival)
        self.next_id += 1
        rid = self.next_id
        openai = kind.startswith("oai")
        rec = {"id": rid, "client_request_id": req.headers.get("x-request-id"), "endpoint": req.path, "model": None,
               "stream": None, "arrival": arrival_wall, "slot_start": None, "first_token_sent": None,
               "last_byte_sent": None, "prompt_tokens": None, "output_tokens": 0, "status": None, "fault": None,
               "outcome": None, "done_reason": None}
        runner = None
        job = None
        out = None
        try:
            try:
                body = self._json_body(req)
                p = self._parse_generation(body, kind)
                ereq = self._engine_request(body, kind, p) if self.engine is not None else None
            except ApiError as e:
                rec.update(status=e.status, outcome="error")
                return self._error(conn, e.status, e.message, openai)
            rec.update(model=p["model"], stream=p["stream"], prompt_tokens=p["prompt_tokens"])
            fault = None if p["empty"] else self.faults.pick()
            rec["fault"] = fault
            if fault == "fail":
                rec.update(status=500, outcome="error")
                return self._error(conn, 500, RUNNER_CRASH, openai)
            try:
                runner = await self.sched.get_runner(p["model"], p["num_ctx"], p["keep_alive"])
            except Busy as e:
                rec.update(status=503, outcome="rejected")
                return self._error(conn, 503, e.message, openai)
            except LoadFailed as e:
                rec.update(status=500, outcome="error")
                return self._error(conn, 500, str(e), openai)
            handed = time.monotonic()
            if p["empty"] and not openai:
                return self._load_only(conn, kind, p, runner, arrival, handed, rec)
            if ereq is not None:  # real inference: the text, its length and the stop reason come from the engine
                from ollama_locust.simulator.llama_runner import LlamaJob
                out = Output(self, conn, kind, p, [], rid)
                job = LlamaJob(ereq, out.emit if p["stream"] else _no_emit, out.add_token)
                n, reason = job.n_out, "stop"
            else:
                default_len = reply_length(self.profile.reply_tokens, p["key"], p["seed"])
                if isinstance(p["fmt"], dict) and p["num_predict"] >= 0:  # a schema's object fits the limit
                    default_len = min(default_len, p["num_predict"])
                toks = reply_tokens(p["key"], seed=p["seed"], model=p["model"], length=default_len, fmt=p["fmt"])
                n, reason = len(toks), "stop"
                if p["num_predict"] >= 0 and p["num_predict"] < n:
                    n, reason = p["num_predict"], "length"
                out = Output(self, conn, kind, p, toks[:n], rid)
                job = Job(n, p["prompt_tokens"], out.emit if p["stream"] else _no_emit)
            if fault and n >= 2:
                self._arm_fault(job, fault, out, rec)
            elif fault:
                rec["fault"] = None
            if n > 0 or ereq is not None:
                try:
                    await runner.generate(job)
                except Busy as e:
                    rec.update(status=503, outcome="rejected")
                    return self._error(conn, 503, e.message, openai)
            else:
                job.slot_start = job.prefill_end = handed
            if ereq is not None:
                if rec["fault"] and not job.fault_fired:  # the reply ended before the fault's place
                    rec["fault"] = None
                reason = job.done_reason or "stop"
                p["prompt_tokens"] = rec["prompt_tokens"] = job.prompt_tokens
                out.context = job.context
                if job.error is not None and not out.ended_by_fault:
                    rec.update(slot_start=wall + job.slot_start, output_tokens=job.sent, outcome="error",
                               status=200 if out.headers_sent else job.error_status, last_byte_sent=time.time())
                    if out.headers_sent:  # mid-stream, as Ollama: one {"error":...} line, no done line
                        out.error_line(job, job.error)
                    else:
                        self._error(conn, job.error_status, job.error, openai)
                    return
            rec["slot_start"] = wall + job.slot_start
            if job.first_token is not None:
                rec["first_token_sent"] = wall + job.first_token if p["stream"] else None
            if out.ended_by_fault:
                rec.update(output_tokens=job.sent, status=200, last_byte_sent=time.time())
                rec["outcome"] = FAULT_OUTCOME[out.ended_by_fault]
                if not p["stream"]:
                    rec["status"] = None if out.ended_by_fault == "drop" else 500
                return
            done = time.monotonic()
            prefill_end = job.prefill_end if job.prefill_end is not None else handed
            metrics = {
                "total_duration": int((done - arrival) * 1e9),
                "load_duration": int((handed - arrival) * 1e9),
                "prompt_eval_count": p["prompt_tokens"],
                "prompt_eval_duration": int(job.prefill_s * 1e9),
                "eval_count": job.sent,
                "eval_duration": int(((job.last_token or prefill_end) - prefill_end) * 1e9),
            }
            out.final(reason, metrics)
            now = time.time()
            if not p["stream"]:
                rec["first_token_sent"] = now
            rec.update(output_tokens=job.sent, status=200, outcome="ok", done_reason=reason, last_byte_sent=now)
        except asyncio.CancelledError:
            ended = out.ended_by_fault if out is not None else None
            rec["outcome"] = FAULT_OUTCOME[ended] if ended else "client_disconnected"
            if job is not None:
                rec["output_tokens"] = job.sent
                if job.slot_start is not None:
                    rec["slot_start"] = wall + job.slot_start
                if job.first_token is not None and rec["stream"]:
                    rec["first_token_sent"] = wall + job.first_token
            if rec["status"] is None and out is not None and out.headers_sent:
                rec["status"] = 200
            raise
        finally:
            if runner is not None:
                runner.release()
            if self.truth is not None:
                if out is not None and out.sent_at is not None and rec["stream"]:
                    origin = req.arrived or arrival
                    rec["token_sent_ms"] = [round((t - origin) * 1000.0, 2) for t in out.sent_at]
                self.truth.write(rec)

    def _load_only(self, conn, kind, p, runner, arrival, handed, rec) -> None:
        """Empty prompt / no messages: load the model (done_reason load), or unload with keep_alive 0."""
        reason = "load"
        if p["keep_alive"] == 0:
            reason = "unload"
        body = {"model": p["echo"], "created_at": _now_utc()}
        if kind == "chat":
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body.update(done=True, done_reason=reason)
        if reason == "load":
            body["total_duration"] = int((handed - arrival) * 1e9)
            body["load_duration"] = int((handed - arrival) * 1e9)
        conn.send(200, _dumps(body))
        rec.update(status=200, outcome="ok", done_reason=reason, last_byte_sent=time.time())

    def _engine_request(self, body: dict, kind: str, p: dict):
        from ollama_locust.simulator.llama_runner import RequestError, engine_request
        try:
            return engine_request(body, kind, p)
        except RequestError as e:
            raise ApiError(400, str(e)) from None

    def _arm_fault(self, job: Job, fault: str, out: "Output", rec: dict) -> None:
        rng = random.Random(f"{self.cfg.seed}-at-{rec['id']}")
        at = rng.randint(1, job.n_out - 1)
        if fault == "stall":
            job.stall_at, job.stall_s = at, self.cfg.stall
            return
        job.fault_at = at
        job.fault_fn = {"drop": out.drop, "garbage": out.garbage, "error_line": out.error_line}[fault]

    def _stats(self) -> dict:
        runners = list(self.sched.runners.values())
        return {**self.sched.stats.summary(), "connections": self.connections, "requests": self.next_id,
                "generating": sum(len(r.busy) + len(r.new) for r in runners),
                "waiting_for_slot": sum(len(r.waiting) for r in runners),
                "scheduler_queue": len(self.sched.queue)}


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _no_emit(job: Job, index: int, created: bytes) -> None:
    return None


def _go_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Output:
    """Builds and writes one request's reply bytes: NDJSON (native), SSE (OpenAI) or one JSON body."""

    def __init__(self, app: App, conn: Conn, kind: str, p: dict, toks: list[str], rid: int):
        self.app, self.conn, self.kind, self.p = app, conn, kind, p
        self.toks = toks
        self.stream = p["stream"]
        self.ended_by_fault: str | None = None
        self.headers_sent = False
        model = orjson.dumps(p["echo"])
        self.created = int(time.time())
        self.oai_id = (f"chatcmpl-{rid % 999}" if kind == "oai_chat" else f"cmpl-{rid % 999}")
        tj = [orjson.dumps(t) for t in toks] if self.stream else []
        self.tj = tj
        self.context: list[int] | None = None  # /api/generate's context: the engine's token ids when it has them
        if kind == "generate":
            self.pre, self.mid, self.post = b'{"model":' + model + b',"created_at":"', b'","response":', b',"done":false}\n'
        elif kind == "chat":
            self.pre, self.mid = b'{"model":' + model + b',"created_at":"', b'","message":{"role":"assistant","content":'
            self.post = b'},"done":false}\n'
        else:
            obj = "chat.completion.chunk" if kind == "oai_chat" else "text_completion"
            head = (b'data: {"id":"' + self.oai_id.encode() + b'","object":"' + obj.encode() + b'","created":'
                    + str(self.created).encode() + b',"model":' + model + b',"system_fingerprint":"fp_ollama","choices":[')
            if kind == "oai_chat":
                self.pre, self.post = head + b'{"index":0,"delta":{"content":', b'},"finish_reason":null}]}\n\n'
                self.role = head + b'{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
            else:
                self.pre, self.post = head + b'{"text":', b',"index":0,"finish_reason":null}]}\n\n'
                self.role = b""
        self.native = kind in ("generate", "chat")
        self.fixed = len(self.pre) + len(self.mid) + len(self.post) if self.native else 0
        self.ctype = NDJSON if self.native else SSE
        # with --truth-log: when each token was written (time.monotonic), the referee of windowed throughput
        self.sent_at: list[float] | None = [] if app.truth is not None else None

    def _write(self, data: bytes) -> None:
        if not self.headers_sent:
            self.headers_sent = True
            data = Conn.head_bytes(200, self.ctype, None) + data
        self.conn.write(data)

    def add_token(self, text: str) -> None:
        """A token made on the fly (a real engine): kept for the reply, then sent by ``emit``."""
        self.toks.append(text)
        if self.stream:
            self.tj.append(orjson.dumps(text))

    # called by the decode loop -----------------------------------------------------------------
    def emit(self, job: Job, i: int, created: bytes) -> None:
        token = self.tj[i]
        if self.sent_at is not None:
            self.sent_at.append(time.monotonic())
        if self.headers_sent and self.native:  # the hot path: one chunk, built in one go
            self.conn.write(b"%x\r\n%s%s%s%s%s\r\n" % (self.fixed + len(created) + len(token), self.pre, created,
                                                        self.mid, token, self.post))
            return
        if self.native:
            body = self.pre + created + self.mid + token + self.post
        elif i == 0 and self.role:
            body = self.role + self.pre + token + self.post
        else:
            body = self.pre + token + self.post
        if self.headers_sent:
            self.conn.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self._write(chunk(body))

    def drop(self, job: Job) -> None:
        self.ended_by_fault = "drop"
        self._end(job)
        self.conn.abort()

    def garbage(self, job: Job) -> None:
        if not self.stream:
            return
        bad = b'{"model":"' if self.kind in ("generate", "chat") else b'data: {"id":"chatcmpl-\n\n'
        self._write(chunk(bad + b"\n" if not bad.endswith(b"\n") else bad))

    def error_line(self, job: Job, message: str = MID_STREAM_ERROR) -> None:
        self.ended_by_fault = "error_line"
        if self.stream:
            if self.kind in ("generate", "chat"):
                line = _dumps({"error": message}) + b"\n"
            else:
                line = b"data: " + _dumps({"error": {"message": message, "type": "api_error",
                                                     "param": None, "code": None}}) + b"\n\n"
            self._write(chunk(line) + LAST_CHUNK)
            self.conn.transport.close() if not self.conn.closed else None
            self.conn.closed = True
        else:
            App._error(self.conn, 500, message, self.kind.startswith("oai"))
            self.conn.close_after = True
        self._end(job)

    def _end(self, job: Job) -> None:
        job.done = True
        if job.finish is not None and not job.finish.done():
            job.finish.set_result(None)

    # the end of a reply ------------------------------------------------------------------------
    def final(self, reason: str, m: dict) -> None:
        kind, p = self.kind, self.p
        if kind in ("generate", "chat"):
            body = {"model": p["echo"], "created_at": _now_utc()}
            if kind == "chat":
                body["message"] = {"role": "assistant", "content": "" if self.stream else "".join(self.toks)}
            else:
                body["response"] = "" if self.stream else "".join(self.toks)
            body.update(done=True, done_reason=reason)
            if kind == "generate":
                body["context"] = self.context if self.context is not None else \
                    list(range(1, min(p["prompt_tokens"] + len(self.toks), 4096) + 1))
            body.update({k: v for k, v in m.items() if v})  # omitempty
            data = _dumps(body)
            if self.stream:
                self._write(chunk(data + b"\n") + LAST_CHUNK)
            else:
                self.conn.send(200, data)
            return
        usage = {"prompt_tokens": m["prompt_eval_count"], "completion_tokens": m["eval_count"],
                 "total_tokens": m["prompt_eval_count"] + m["eval_count"]}
        base = {"id": self.oai_id, "object": None, "created": self.created, "model": p["echo"],
                "system_fingerprint": "fp_ollama"}
        text = "".join(self.toks)
        if not self.stream:
            if kind == "oai_chat":
                base.update(object="chat.completion", choices=[{"index": 0, "message": {"role": "assistant",
                            "content": text}, "finish_reason": reason}], usage=usage)
            else:
                base.update(object="text_completion", choices=[{"text": text, "index": 0, "finish_reason": reason}],
                            usage=usage)
            self.conn.send(200, _dumps(base))
            return
        if kind == "oai_chat":
            base.update(object="chat.completion.chunk",
                        choices=[{"index": 0, "delta": {}, "finish_reason": reason}])
        else:
            base.update(object="text_completion", choices=[{"text": "", "index": 0, "finish_reason": reason}])
        parts = [b"data: " + _dumps(base) + b"\n\n"]
        if p["include_usage"]:
            base = dict(base, choices=[], usage=usage)
            parts.append(b"data: " + _dumps(base) + b"\n\n")
        parts.append(b"data: [DONE]\n\n")
        self._write(b"".join(chunk(x) for x in parts) + LAST_CHUNK)
