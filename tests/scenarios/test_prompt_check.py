"""The preflight's prompt check: a server whose prompt token count does not change with the prompt."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ollama_locust.scenarios import preflight


def _server(count_of):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = body["messages"][-1]["content"]
            n = count_of(text)
            reply = ({"usage": {"prompt_tokens": n, "completion_tokens": 1}} if self.path.startswith("/v1")
                     else {"prompt_eval_count": n, "eval_count": 1, "done": True})
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("api", ["openai", "ollama-chat"])
def test_same_count_for_both_prompts_is_an_error(api):
    server = _server(lambda text: 3)  # llama-server --jinja --chat-template gemma: the prompt is "gemma"
    try:
        with pytest.raises(preflight.PreflightError) as caught:
            preflight.check_prompt_seen(f"http://127.0.0.1:{server.server_port}", "m", api, timeout=5)
    finally:
        server.shutdown()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the server is not seeing the prompt: ")
    assert "both counted 3 prompt tokens" in message and "chat template" in message


def test_counts_that_follow_the_prompt_pass():
    server = _server(lambda text: 10 + len(text.split()))
    try:
        seen = preflight.check_prompt_seen(f"http://127.0.0.1:{server.server_port}", "m", "openai", timeout=5)
    finally:
        server.shutdown()
    assert seen["long"] > seen["short"] + 30, seen


def test_no_counts_or_a_gateway_say_nothing():
    assert preflight.check_prompt_seen("http://127.0.0.1:9", "m", "gateway") == {"short": None, "long": None}
    # a refused connection (the target died since check_target) is not this check's finding
    assert preflight.check_prompt_seen("http://127.0.0.1:9", "m", "openai", timeout=2) == {"short": None, "long": None}
