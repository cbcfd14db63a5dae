"""The LLM clients: one class per API, all with the same call.

``client.chat(messages, json_format=False) -> (record, text)``: ``messages`` is the conversation so far
(``[{"role": "user"|"assistant"|"system", "content": str}, ...]``, the last one the user's new
question); ``record`` holds the schema columns the client measured (``scenarios.base.RECORD_FIELDS``),
``text`` the reply ('' unless the outcome is ok). Each client owns one keep-alive connection: make one
per Locust user, and ``close()`` it when the user stops. Never raises an ``Exception``; a stop
(``GreenletExit``) is re-raised with the ``cut_short`` record on it as ``exc.llm_record``.

``json_format``: ``False`` (free text), ``True`` (any JSON object: Ollama's ``format: "json"``, OpenAI's
``response_format: {"type": "json_object"}``) or a JSON schema ``dict`` (structured output: Ollama's
``format: <schema>``, OpenAI's ``response_format: {"type": "json_schema", "json_schema": {...}}``).
"""

from __future__ import annotations

import orjson

from ollama_locust.scenarios.clients.base import exchange, html_page_message, new_record, retry_after_s
from ollama_locust.scenarios.clients.streams import DocumentDecoder, NDJSONDecoder, SSEDecoder
from ollama_locust.scenarios.clients.transport import Connection
from ollama_locust.scenarios import secrets
from ollama_locust.scenarios.request_report import next_request_id

_dumps = orjson.dumps


def transcript(messages: list[dict]) -> str:
    """A conversation as one prompt (for APIs that take a single prompt): the last question alone when
    there is no history, else 'User: ...' / 'Assistant: ...' lines ending with 'Assistant:'."""
    if len(messages) == 1:
        return messages[0]["content"]
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    lines = [f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages]
    lines.append("Assistant:")
    return "\n\n".join(lines)


class LLMClient:
    """Common part of the clients: connection, timeouts, headers, the request id."""

    api = "?"
    path = "/"
    accept = "application/x-ndjson"

    def __init__(self, host: str, model: str, *, num_predict: int = 0, first_token_timeout: float = 120.0,
                 request_timeout: float = 300.0, api_key: str | None = None, connect_timeout: float = 10.0):
        self.host = host
        self.model = model
        self.num_predict = int(num_predict or 0)
        self.first_token_timeout = first_token_timeout
        self.request_timeout = request_timeout
        self.conn = Connection(host, connect_timeout=connect_timeout)
        self.retry_after: float | None = None  # seconds the last reply asked to wait (Retry-After on 429/503)
        self._headers = {"Content-Type": "application/json", "Accept": self.accept, "User-Agent": "ollama-locust"}
        if api_key:
            secrets.register(api_key)
            self._headers["Authorization"] = f"Bearer {api_key}"

    def __repr__(self) -> str:  # never shows the key
        return f"<{type(self).__name__} {self.api} {self.host} model={self.model!r}>"

    def payload(self, messages: list[dict], json_format: "bool | dict") -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def decoder(self, content_type: str):
        """A decoder for a reply of this content type, or an error message (outcome invalid)."""
        if content_type == "text/html":
            return html_page_message(self.path)
        if content_type == "text/event-stream":
            return SSEDecoder()
        return NDJSONDecoder(field=None)

    def body(self, messages: list[dict], json_format: "bool | dict") -> bytes:
        return _dumps(self.payload(messages, json_format))

    def chat(self, messages: list[dict], *, json_format: "bool | dict" = False, request_id: str | None = None) -> tuple[dict, str]:
        """Send one request for the conversation ``messages``; returns (record, reply text)."""
        request_id = request_id or next_request_id()
        record = new_record(self.api, self.model, request_id)
        try:
            body = self.body(messages, json_format)
        except Exception as exc:  # a bad template value etc.: still a record
            from ollama_locust import contract

            record["outcome"] = contract.INVALID
            record["error"] = f"cannot build the request: {exc}"
            record["e2e_ms"] = 0.0
            return record, ""
        headers = dict(self._headers)
        headers["X-Request-ID"] = request_id
        text = exchange(self.conn, self.path, body, headers, record, self.decoder,
                        self.first_token_timeout, self.request_timeout)
        self.retry_after = retry_after_s(record.pop("_retry_after", None))  # the server's Retry-After, bounded
        return record, text

    def close(self) -> None:
        self.conn.close()


class _OllamaNativeClient(LLMClient):
    """What /api/chat and /api/generate share: NDJSON, ``format`` (json or a schema), ``options.num_predict``."""

    content_field = "message"

    def prompt_fields(self, messages: list[dict]) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def payload(self, messages, json_format):
        payload = {"model": self.model, **self.prompt_fields(messages), "stream": True}
        if json_format:
            payload["format"] = json_format if isinstance(json_format, dict) else "json"
        if self.num_predict:
            payload["options"] = {"num_predict": self.num_predict}
        return payload

    def decoder(self, content_type):
        chosen = super().decoder(content_type)
        if isinstance(chosen, NDJSONDecoder):
            chosen.field = self.content_field
        return chosen


class OllamaChatClient(_OllamaNativeClient):
    """Ollama ``POST /api/chat``, ``stream: true`` (NDJSON, content in ``message.content``)."""

    api = "ollama-chat"
    path = "/api/chat"
    content_field = "message"

    def prompt_fields(self, messages):
        return {"messages": messages}


class OllamaGenerateClient(_OllamaNativeClient):
    """Ollama ``POST /api/generate``, ``stream: true`` (NDJSON, content in ``response``). A multi-turn
    conversation is sent as one transcript prompt."""

    api = "ollama-generate"
    path = "/api/generate"
    content_field = "response"

    def prompt_fields(self, messages):
        return {"prompt": transcript(messages)}


class OpenAIClient(LLMClient):
    """OpenAI-compatible ``POST /v1/chat/completions``, ``stream: true`` with
    ``stream_options.include_usage`` (SSE; the usage chunk gives the token counts)."""

    api = "openai"
    path = "/v1/chat/completions"
    accept = "text/event-stream"

    def payload(self, messages, json_format):
        payload = {"model": self.model, "messages": messages, "stream": True,
                   "stream_options": {"include_usage": True}}
        if isinstance(json_format, dict):
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": str(json_format.get("title") or "reply"), "strict": True, "schema": json_format}}
        elif json_format:
            payload["response_format"] = {"type": "json_object"}
        if self.num_predict:
            payload["max_tokens"] = self.num_predict
        return payload

    def decoder(self, content_type):
        if content_type == "text/html":
            return html_page_message(self.path)
        if content_type == "application/x-ndjson":
            return NDJSONDecoder(field=None)
        if content_type == "application/json":
            return DocumentDecoder()
        return SSEDecoder()
