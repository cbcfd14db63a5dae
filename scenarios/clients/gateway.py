"""The app gateway client: the endpoint an app puts in front of Ollama (a kitchen app's /recipe, ...).

Configured by ``--gateway-path``, ``--gateway-payload FILE`` (a JSON template), ``--gateway-field``
(dotted path of the reply text) and ``--gateway-stream auto|ndjson|sse|json``.

The template is any JSON document; in its string values ``{{prompt}}`` becomes the question (the
conversation as a transcript when it has history) and ``{{model}}`` the model; a string that is exactly
``"{{messages}}"`` becomes the whole message list. A template with neither ``{{prompt}}`` nor
``{{messages}}`` is an error (:class:`GatewayConfigError`), raised when the client is made.

The reply is detected by Content-Type with ``auto``: ``application/x-ndjson`` (Ollama-style chunks),
``text/event-stream`` (OpenAI-style events), ``application/json`` (one document, text at
``--gateway-field`` or a usual place), ``text/plain`` (raw streamed text); an HTML page is ``invalid``
with a message saying so (a wrong path or a login page).
"""

from __future__ import annotations

import codecs

import orjson

from ollama_locust.scenarios.clients.llm import LLMClient, transcript
from ollama_locust.scenarios.clients.streams import Decoder, DocumentDecoder, NDJSONDecoder, SSEDecoder

DEFAULT_TEMPLATE = {"model": "{{model}}", "messages": [{"role": "user", "content": "{{prompt}}"}], "stream": True}
STREAM_MODES = ("auto", "ndjson", "sse", "json")


class GatewayConfigError(ValueError):
    """The gateway options are unusable (template file missing, not JSON, no {{prompt}})."""


def load_template(path: str | None):
    """The payload template from a JSON file (``--gateway-payload``), or the default (Ollama chat)."""
    if not path:
        return DEFAULT_TEMPLATE
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise GatewayConfigError(f"gateway payload template {path}: {exc.strerror or exc}") from None
    try:
        template = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayConfigError(f"gateway payload template {path}: not valid JSON ({exc})") from None
    check_template(template, path)
    return template


def check_template(template, where: str = "gateway payload template") -> None:
    text = orjson.dumps(template).decode()
    if "{{prompt}}" not in text and '"{{messages}}"' not in text:
        raise GatewayConfigError(f"{where}: no {{{{prompt}}}} placeholder; put \"{{{{prompt}}}}\" where the question goes")


def render(template, prompt: str, model: str, messages: list[dict]):
    """The template with its placeholders filled (a new object; the template is not changed)."""
    if isinstance(template, str):
        if template == "{{messages}}":
            return messages
        if "{{" in template:
            return template.replace("{{prompt}}", prompt).replace("{{model}}", model)
        return template
    if isinstance(template, dict):
        return {key: render(value, prompt, model, messages) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, prompt, model, messages) for value in template]
    return template


class TextDecoder(Decoder):
    """A ``text/plain`` reply streamed as raw text: every piece is content; the end of the body ends it."""

    kind = "text"

    def __init__(self):
        super().__init__()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes, now: float) -> bool:
        text = self._utf8.decode(data)
        if text:
            self._content(text, now)
        return False

    def eof(self) -> None:
        self.done = True


class GatewayClient(LLMClient):
    """An app's own endpoint (``api = "gateway"``)."""

    api = "gateway"
    accept = "application/x-ndjson, text/event-stream, application/json;q=0.9, */*;q=0.5"

    def __init__(self, host: str, model: str, *, path: str = "/api/chat", template=None, field: str = "",
                 stream: str = "auto", **kwargs):
        super().__init__(host, model, **kwargs)
        if stream not in STREAM_MODES:
            raise GatewayConfigError(f"--gateway-stream {stream!r}: choose one of {', '.join(STREAM_MODES)}")
        self.path = path if path.startswith("/") else "/" + path
        self.template = DEFAULT_TEMPLATE if template is None else template
        check_template(self.template)
        self.field = tuple(field.split(".")) if field else None
        self.stream = stream

    sends_format = False  # the app's own payload (the template) decides what the model is asked for

    def payload(self, messages, json_format):
        return render(self.template, transcript(messages), self.model, messages)

    def decoder(self, content_type: str):
        mode = self.stream
        if mode == "auto":
            if content_type in ("text/html", "application/xhtml+xml"):
                return (f"the gateway answered an HTML page ({content_type}) for {self.path}, not an LLM reply "
                        "(check --gateway-path; a login or error page?)")
            if content_type in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/ndjson"):
                mode = "ndjson"
            elif content_type == "text/event-stream":
                mode = "sse"
            elif content_type == "text/plain":
                return TextDecoder()
            else:
                mode = "json"
        if mode == "ndjson":
            return NDJSONDecoder(field=None, path=self.field)
        if mode == "sse":
            return SSEDecoder(path=self.field)
        return DocumentDecoder(path=self.field)
