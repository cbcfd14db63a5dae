"""Decoders of streamed LLM replies: Ollama NDJSON, OpenAI SSE, and one JSON document.

Pure code (no sockets, no gevent), fed with byte pieces exactly as they come off the connection, each
with the time it arrived. A decoder collects the raw facts the metrics need: the content pieces,
the time of the first and last content chunk, their count, the final chunk's fields, the reported
token counts. It raises :class:`StreamError` for anything malformed (a line that is not JSON, an
``{"error": ...}`` line mid-stream, a line longer than ``max_line``), and :meth:`eof` raises it when the
stream ended without its end marker.

``feed(data, now)`` returns True once the end marker (``"done": true`` / ``data: [DONE]``) arrived.
"""

from __future__ import annotations

import orjson

MAX_LINE = 1 << 20  # 1 MiB: a longer line is a stream_error, and memory stays bounded
MAX_DOCUMENT = 16 << 20  # a non-streamed JSON reply larger than this is a stream_error
MAX_REPLY_TEXT = 1 << 20  # characters of reply text kept per request (chunks beyond it are counted, not kept)

from ollama_locust.contract import TOKEN_BUCKET_MS

_BUCKETS_PER_S = 1000.0 / TOKEN_BUCKET_MS
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class StreamError(Exception):
    """The reply stream is broken: malformed, an error line, too long, or ended without its end."""


def _snippet(raw: bytes, limit: int = 80) -> str:
    text = raw[:limit].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return text + ("..." if len(raw) > limit else "")


def mid_stream_error(error) -> StreamError:
    """The one line for an ``{"error": ...}`` the server sent in the middle of a reply."""
    return StreamError(f"error mid-stream: {error_text(error)}")


def error_text(value) -> str:
    """One line from an error value: ``"msg"`` (Ollama) or ``{"message": "msg", ...}`` (OpenAI)."""
    if isinstance(value, dict):
        value = value.get("message") or value.get("error") or orjson.dumps(value).decode()
    return " ".join(str(value).split())


def count(value, name: str, bad: list[str]):
    """A token count the server reported, when it is a non-negative integer; else None, and
    ``name='value'`` is noted in ``bad`` (the record's ``bad_counts``: ignored, tokens estimated)."""
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    bad.append(f"{name}={_snippet(orjson.dumps(value), 20)}")
    return None


def dig(obj, path: tuple[str, ...]):
    """Follow a dotted path (already split) through dicts and lists (numeric parts index lists)."""
    for part in path:
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.lstrip("-").isdigit():
            index = int(part)
            obj = obj[index] if -len(obj) <= index < len(obj) else None
        else:
            return None
        if obj is None:
            return None
    return obj


class Decoder:
    """Common state of every decoder (the raw facts for :mod:`scenarios.request_metrics`)."""

    kind = "?"

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.parts: list[str] = []
        self.chunks = 0  # content chunks (non-empty content)
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.done = False
        self.final: dict | None = None  # Ollama's done chunk (its metrics)
        self.done_reason: str | None = None
        self.completion_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.streamed = True
        self.bad_counts: list[str] = []  # reported counts that were not non-negative integers (ignored)
        self.text_size = 0  # characters of content kept in ``parts`` (at most MAX_REPLY_TEXT)
        self._tail = b""
        # token_arrivals: content chunks per TOKEN_BUCKET_MS bucket after ``origin`` (perf_counter s, set by
        # the driver when the request is sent); request_metrics.token_arrivals encodes them for the record.
        self.origin: float | None = None
        self.buckets: list[int] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _lines(self, data: bytes) -> list[bytes]:
        if self._tail:
            data = self._tail + data
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > self.max_line:
            self._tail = b""
            raise StreamError(f"a reply line is longer than {self.max_line} bytes")
        self._tail = tail
        return lines

    def _content(self, content, now: float) -> None:
        if self.text_size < MAX_REPLY_TEXT:
            content = content[: MAX_REPLY_TEXT - self.text_size]
            self.parts.append(content)
            self.text_size += len(content)
        self.chunks += 1
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        if self.origin is not None:
            index = max(0, int((now - self.origin) * _BUCKETS_PER_S))  # a read is never dated before the send
            buckets = self.buckets
            if index < len(buckets):
                buckets[index] += 1
            else:
                buckets.extend([0] * (index - len(buckets)))
                buckets.append(1)

    def feed(self, data: bytes, now: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def eof(self) -> None:
        """The body ended: raise :class:`StreamError` when the end marker never came."""
        if self.done:
            return
        if self._tail.strip():
            # the last line had no newline: give it a chance (some servers omit the final newline)
            tail, self._tail = self._tail, b""
            self.feed(tail + b"\n", self.t_last if self.t_last is not None else 0.0)
            if self.done:
                return
        raise StreamError(f"stream ended without its end marker ({self.kind})")


class NDJSONDecoder(Decoder):
    """Ollama's ``application/x-ndjson``: one JSON object per line, the last with ``"done": true``.

    ``field`` picks the content: ``"message"`` (``/api/chat``: ``message.content``), ``"response"``
    (``/api/generate``), or ``None`` to accept either (a gateway relaying Ollama). ``path`` is a dotted
    path (split) for other gateways' chunk shapes.
    """

    kind = "ndjson"

    def __init__(self, field: str | None = "message", path: tuple[str, ...] | None = None, max_line: int = MAX_LINE):
        super().__init__(max_line)
        self.field = field
        self.path = path

    def feed(self, data: bytes, now: float) -> bool:
        for line in self._lines(data):
            if self.done:
                return True
            if not line or line.isspace():
                continue
            try:
                obj = _loads(line)
            except _JSONDecodeError:
                raise StreamError(f"malformed reply line: {_snippet(line)!r}") from None
            if type(obj) is not dict:
                raise StreamError(f"reply line is not a JSON object: {_snippet(line)!r}")
            if self.path is not None:
                content = dig(obj, self.path)
            elif self.field == "message":
                message = obj.get("message")
                content = message.get("content") if type(message) is dict else None
            elif self.field == "response":
                content = obj.get("response")
            else:
                message = obj.get("message")
                content = message.get("content") if type(message) is dict else obj.get("response")
            if content:
                self._content(content if type(content) is str else str(content), now)
            elif "error" in obj:
                raise mid_stream_error(obj["error"])
            if obj.get("done"):
                self.done = True
                self.final = obj
                self.done_reason = obj.get("done_reason")
                reported = count(obj.get("eval_count"), "eval_count", self.bad_counts)
                if reported is not None:
                    self.completion_tokens = reported
                elif self.chunks == 0 and "total_duration" in obj and "eval_count" not in obj:
                    self.completion_tokens = 0  # omitempty: metrics reported, eval_count 0 left out
                prompt = count(obj.get("prompt_eval_count"), "prompt_eval_count", self.bad_counts)
                self.prompt_tokens = prompt if prompt is not None else (
                    0 if "total_duration" in obj and "prompt_eval_count" not in obj else None)
                return True
        return self.done


class SSEDecoder(Decoder):
    """Server-sent events (``text/event-stream``) of OpenAI's chat completions.

    ``data: {chunk}`` events, separated by blank lines; content in ``choices[0].delta.content``;
    ``finish_reason`` in a later chunk; the usage chunk (``choices: []``, ``usage``) only with
    ``stream_options.include_usage``; the end is ``data: [DONE]``. Comments (``:``) and ``event:``/
    ``id:``/``retry:`` fields are ignored, multi-line ``data:`` fields joined with a newline.
    ``path`` reads content from another field of each event (a gateway).
    """

    kind = "sse"

    def __init__(self, path: tuple[str, ...] | None = None, max_line: int = MAX_LINE):
        super().__init__(max_line)
        self.path = path
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, data: bytes, now: float) -> bool:
        for line in self._lines(data):
            if self.done:
                return True
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self._data:
                    payload = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                    self._data = []
                    self._data_size = 0
                    self._event(payload, now)
                continue
            if line[:5] == b"data:":
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                if value == b"[DONE]":  # dispatch at once: nothing may follow
                    self._data = []
                    self.done = True
                    return True
                self._data.append(value)
                self._data_size += len(value)
                if self._data_size > self.max_line:
                    raise StreamError(f"an event's data is longer than {self.max_line} bytes")
            # ':' comments and other fields (event, id, retry) carry nothing we measure
        return self.done

    def eof(self) -> None:
        if not self.done and self._data:
            payload, self._data = b"\n".join(self._data), []
            self._event(payload, self.t_last if self.t_last is not None else 0.0)
        super().eof()

    def _event(self, payload: bytes, now: float) -> None:
        try:
            obj = _loads(payload)
        except _JSONDecodeError:
            raise StreamError(f"malformed event data: {_snippet(payload)!r}") from None
        if type(obj) is not dict:
            raise StreamError(f"event data is not a JSON object: {_snippet(payload)!r}")
        if "error" in obj and obj["error"]:
            raise mid_stream_error(obj["error"])
        if self.path is not None:
            content = dig(obj, self.path)
            if content:
                self._content(content if type(content) is str else str(content), now)
        else:
            choices = obj.get("choices")
            if choices:
                choice = choices[0]
                if type(choice) is dict:
                    delta = choice.get("delta")
                    if type(delta) is dict:
                        content = delta.get("content")
                    else:  # /v1/completions-style chunks
                        content = choice.get("text")
                    if content:
                        self._content(content if type(content) is str else str(content), now)
                    reason = choice.get("finish_reason")
                    if reason:
                        self.done_reason = reason
        usage = obj.get("usage")
        if type(usage) is dict:
            completion = count(usage.get("completion_tokens"), "completion_tokens", self.bad_counts)
            if completion is not None:
                self.completion_tokens = completion
            prompt = count(usage.get("prompt_tokens"), "prompt_tokens", self.bad_counts)
            if prompt is not None:
                self.prompt_tokens = prompt


class DocumentDecoder(Decoder):
    """A reply that is one JSON document (``stream: false``, or a gateway that answers at once).

    Content from ``path`` (dotted, split) or, without one, the first of ``message.content``,
    ``response``, ``choices.0.message.content``, ``choices.0.text``. Token counts and Ollama's durations
    are taken from the document when present. TTFT and ITL are not measurable (``streamed`` False).
    """

    kind = "json"
    DEFAULT_PATHS = (("message", "content"), ("response",), ("choices", "0", "message", "content"),
                     ("choices", "0", "text"))

    def __init__(self, path: tuple[str, ...] | None = None, max_size: int = MAX_DOCUMENT):
        super().__init__(max_size)
        self.path = path
        self.streamed = False
        self._body: list[bytes] = []
        self._size = 0
        self._t_end = 0.0

    def feed(self, data: bytes, now: float) -> bool:
        self._body.append(data)
        self._size += len(data)
        self._t_end = now
        if self._size > self.max_line:
            raise StreamError(f"reply document larger than {self.max_line} bytes")
        return False

    def eof(self) -> None:
        raw = b"".join(self._body)
        if not raw.strip():
            raise StreamError("empty reply body")
        try:
            obj = _loads(raw)
        except _JSONDecodeError:
            raise StreamError(f"reply is not JSON: {_snippet(raw)!r}") from None
        if type(obj) is dict and obj.get("error"):
            raise StreamError(f"error in reply: {error_text(obj['error'])}")
        paths = (self.path,) if self.path is not None else self.DEFAULT_PATHS
        content = None
        for path in paths:
            content = dig(obj, path)
            if content is not None:
                break
        if content is None and self.path is not None:
            raise StreamError(f"reply has no field '{'.'.join(self.path)}' (--gateway-field)")
        if content is not None and type(content) is not str:
            content = orjson.dumps(content).decode()
        if content:
            self._content(content, self._t_end)
        self.done = True
        if type(obj) is dict:
            if any(key in obj for key in ("total_duration", "eval_duration")):
                self.final = obj
                reported = count(obj.get("eval_count", 0), "eval_count", self.bad_counts)
                self.completion_tokens = reported
                prompt = count(obj.get("prompt_eval_count", 0), "prompt_eval_count", self.bad_counts)
                self.prompt_tokens = prompt
                self.done_reason = obj.get("done_reason")
            usage = obj.get("usage")
            if type(usage) is dict:
                completion = count(usage.get("completion_tokens"), "completion_tokens", self.bad_counts)
                self.completion_tokens = completion if completion is not None else self.completion_tokens
                prompt = count(usage.get("prompt_tokens"), "prompt_tokens", self.bad_counts)
                self.prompt_tokens = prompt if prompt is not None else self.prompt_tokens
                choice = dig(obj, ("choices", "0"))
                if type(choice) is dict and choice.get("finish_reason"):
                    self.done_reason = choice["finish_reason"]
