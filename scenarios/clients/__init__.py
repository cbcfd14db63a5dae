"""Streaming LLM clients (Ollama native, OpenAI-compatible, an app gateway) for Locust users under gevent.

    client = make_client(environment, host)          # one per user: it owns a keep-alive connection
    record, text = client.chat(messages, json_format=False)
    client.close()

``record`` has the schema columns the client measured (``RECORD_FIELDS``); hand it to
``scenarios.request_report.report_request``. Modules: ``transport`` (HTTP/1.1 over gevent sockets),
``streams`` (NDJSON/SSE/JSON decoders, pure), ``base`` (one request: timeouts, outcome, metrics),
``llm`` (the Ollama and OpenAI clients), ``gateway`` (the app gateway client).
"""

from __future__ import annotations

import os

from ollama_locust import contract
from ollama_locust.scenarios.clients.base import RECORD_FIELDS, exchange, new_record
from ollama_locust.scenarios.clients.gateway import GatewayClient, GatewayConfigError, load_template
from ollama_locust.scenarios.clients.llm import LLMClient, OllamaChatClient, OllamaGenerateClient, OpenAIClient, transcript
from ollama_locust.scenarios.clients.streams import MAX_LINE, DocumentDecoder, NDJSONDecoder, SSEDecoder, StreamError

# The one table API name -> client class (the names are the contract's: --api's choices, the record's column).
CLIENTS: dict[str, type[LLMClient]] = {
    contract.OLLAMA_CHAT: OllamaChatClient,
    contract.OLLAMA_GENERATE: OllamaGenerateClient,
    contract.OPENAI: OpenAIClient,
    contract.GATEWAY: GatewayClient,
}

__all__ = [
    "CLIENTS",
    "MAX_LINE",
    "RECORD_FIELDS",
    "DocumentDecoder",
    "GatewayClient",
    "GatewayConfigError",
    "LLMClient",
    "NDJSONDecoder",
    "OllamaChatClient",
    "OllamaGenerateClient",
    "OpenAIClient",
    "SSEDecoder",
    "StreamError",
    "api_key",
    "exchange",
    "load_template",
    "make_client",
    "new_record",
    "transcript",
]

_templates: dict[str, object] = {}


def api_key(environment) -> str | None:
    """The bearer key from the environment variable named by ``--api-key-env`` (never an option value)."""
    from ollama_locust import options

    name = options.get(environment, "api_key_env")
    return os.environ.get(name) if name else None


def make_client(environment, host: str | None = None, api: str | None = None) -> LLMClient:
    """The client for ``--api`` (or ``api``), configured from the environment's options.

    Raises ``ValueError`` (``GatewayConfigError`` for the gateway options) when they are unusable.
    """
    from ollama_locust import options

    api = api or options.get(environment, "api")
    if api not in CLIENTS:
        raise ValueError(f"unknown --api {api!r}; available: {', '.join(CLIENTS)}")
    host = host or getattr(environment, "host", None)
    if not host:
        from ollama_locust.scenarios.preflight import NO_HOST

        raise ValueError(NO_HOST)
    kwargs = dict(
        num_predict=options.get(environment, "num_predict") or 0,
        first_token_timeout=float(options.get(environment, "first_token_timeout")),
        request_timeout=float(options.get(environment, "request_timeout")),
    )
    model = options.get(environment, "model")
    if api in (contract.OPENAI, contract.GATEWAY):
        kwargs["api_key"] = api_key(environment)
    if api == contract.GATEWAY:
        payload_path = options.get(environment, "gateway_payload") or ""
        if payload_path not in _templates:
            _templates[payload_path] = load_template(payload_path)
        return GatewayClient(host, model, path=options.get(environment, "gateway_path"),
                             template=_templates[payload_path], field=options.get(environment, "gateway_field") or "",
                             stream=options.get(environment, "gateway_stream"), **kwargs)
    return CLIENTS[api](host, model, **kwargs)
