"""The clients end to end against a scripted HTTP server on loopback, in-process under gevent.

The server answers each request with a script: bytes to send, pauses, a close. This checks what the
byte fixtures cannot: timeouts, resets, status classes, connection reuse, a killed greenlet.
"""

import gevent
import gevent.server
import orjson
import pytest

from ollama_locust import contract
from ollama_locust.scenarios.clients import GatewayClient, GatewayConfigError, OllamaChatClient, OllamaGenerateClient, OpenAIClient
from ollama_locust.scenarios.clients.gateway import render

CLOSE = object()


class ScriptServer:
    def __init__(self):
        self.scripts = []
        self.requests = []  # (head text, body bytes)
        self.connections = 0
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self.handle)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def handle(self, sock, _addr):
        self.connections += 1
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                buf += sock.recv(65536)
            body, buf = buf[:length], buf[length:]
            self.requests.append((head.decode("latin-1"), body))
            script = self.scripts.pop(0)
            for step in script:
                if step is CLOSE:
                    sock.close()
                    return
                if isinstance(step, (int, float)):
                    gevent.sleep(step)
                else:
                    sock.sendall(step)

    def stop(self):
        self.server.stop()


@pytest.fixture
def server():
    srv = ScriptServer()
    yield srv
    srv.stop()


def chunked(*pieces):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def head(status=200, ctype="application/x-ndjson", extra=b""):
    reason = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 503: b"Service Unavailable"}.get(status, b"X")
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n" % (status, reason, ctype.encode(), extra)


def line(content, **extra):
    obj = {"model": "m", "message": {"role": "assistant", "content": content}, "done": False}
    obj.update(extra)
    return orjson.dumps(obj) + b"\n"


FINAL = line("", done=True, done_reason="stop", total_duration=50_000_000, load_duration=1_000_000,
             prompt_eval_count=7, prompt_eval_duration=2_000_000, eval_count=3, eval_duration=20_000_000)
END = b"0\r\n\r\n"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def client(server, cls=OllamaChatClient, **kw):
    kw.setdefault("first_token_timeout", 2.0)
    kw.setdefault("request_timeout", 5.0)
    return cls(server.url, "m", **kw)


def test_ok_stream_metrics_and_keepalive(server):
    script = [head(), chunked(line("A")), 0.05, chunked(line("B")), 0.05, chunked(line("C")), chunked(FINAL), END]
    server.scripts += [script, list(script)]
    c = client(server)
    record, text = c.chat(MESSAGES, request_id="req-1")
    assert record["outcome"] == contract.OK, record
    assert text == "ABC"
    assert record["http_status"] == 200 and record["request_id"] == "req-1"
    assert record["output_tokens"] == 3 and record["tokens_estimated"] is False and record["prompt_tokens"] == 7
    assert record["itl_ms"] == pytest.approx(50, abs=15)
    assert record["e2e_ms"] - record["ttft_ms"] == pytest.approx(100, abs=25)
    assert record["queue_wait_ms"] == pytest.approx(27.0)
    assert record["tokens_per_s"] == pytest.approx(2 / ((record["e2e_ms"] - record["ttft_ms"]) / 1000))
    assert record["done_reason"] == "stop"
    record2, _ = c.chat(MESSAGES)
    assert record2["outcome"] == contract.OK
    assert server.connections == 1  # the connection was reused
    req_head, body = server.requests[0]
    assert "X-Request-ID: req-1" in req_head
    assert orjson.loads(body) == {"model": "m", "messages": MESSAGES, "stream": True}


def test_generate_payload_options(server):
    server.scripts.append([head(), chunked(b'{"response":"x","done":false}\n{"response":"","done":true,"eval_count":1}\n'), END])
    c = client(server, OllamaGenerateClient, num_predict=16)
    record, text = c.chat(MESSAGES, json_format=True)
    assert record["outcome"] == contract.OK and text == "x"
    body = orjson.loads(server.requests[0][1])
    assert body == {"model": "m", "prompt": MESSAGES[0]["content"], "stream": True, "format": "json",
                    "options": {"num_predict": 16}}


@pytest.mark.parametrize("status,outcome", [(503, contract.REJECTED), (429, contract.REJECTED), (404, contract.HTTP_ERROR)])
def test_status_classes(server, status, outcome):
    body = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
    server.scripts.append([b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)])
    record, text = client(server).chat(MESSAGES)
    assert record["outcome"] == outcome and record["http_status"] == status and text == ""
    assert record["error"].startswith(f"HTTP {status}: server busy")


def test_connection_refused_is_http_error():
    srv = ScriptServer()
    url = srv.url
    srv.stop()
    record, _ = OllamaChatClient(url, "m").chat(MESSAGES)
    assert record["outcome"] == contract.HTTP_ERROR and record["http_status"] == 0
    assert "connection refused" in record["error"]


def test_reset_before_status_is_http_error(server):
    server.scripts.append([CLOSE])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.HTTP_ERROR and record["http_status"] == 0


def test_drop_mid_stream_is_stream_error(server):
    server.scripts.append([head(), chunked(line("A")), CLOSE])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.STREAM_ERROR and record["ttft_ms"] is not None
    assert "mid-reply" in record["error"]


def test_error_line_mid_stream(server):
    server.scripts.append([head(), chunked(line("A")), chunked(b'{"error":"an error was encountered while running the model"}\n'), CLOSE])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.STREAM_ERROR and "error mid-stream" in record["error"]


def test_stream_without_done(server):
    server.scripts.append([head(), chunked(line("A")), END])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.STREAM_ERROR and "end marker" in record["error"]


def test_empty_reply(server):
    server.scripts.append([head(), chunked(line(""), line("", done=True, total_duration=1000)), END])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.EMPTY and record["output_tokens"] == 0


def test_first_token_timeout(server):
    server.scripts.append([head(), chunked(line("")), 3.0, CLOSE])
    record, _ = client(server, first_token_timeout=0.3).chat(MESSAGES)
    assert record["outcome"] == contract.TIMEOUT and "first token" in record["error"]
    assert record["e2e_ms"] == pytest.approx(300, abs=100)


def test_total_timeout(server):
    server.scripts.append([head(), chunked(line("A")), 0.2, chunked(line("B")), 3.0, CLOSE])
    record, _ = client(server, first_token_timeout=0.3, request_timeout=0.5).chat(MESSAGES)
    assert record["outcome"] == contract.TIMEOUT and "--request-timeout" in record["error"]
    assert record["ttft_ms"] is not None and record["output_tokens"] == 2


def test_huge_line_is_bounded(server):
    big = b'{"message":{"content":"' + b"x" * (5 << 20) + b'"},"done":false}\n'
    server.scripts.append([head(), chunked(line("A")), chunked(big), CLOSE])
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.STREAM_ERROR and "longer than" in record["error"]


def test_cut_short_when_killed(server):
    server.scripts.append([head(), chunked(line("A")), 5.0, CLOSE])
    c = client(server, first_token_timeout=10, request_timeout=10)
    seen = {}

    def run():
        try:
            c.chat(MESSAGES)
        except gevent.GreenletExit as exc:
            seen["record"] = exc.llm_record
            raise

    greenlet = gevent.spawn(run)
    gevent.sleep(0.3)
    greenlet.kill(block=True)
    assert seen["record"]["outcome"] == contract.CUT_SHORT
    assert seen["record"]["ttft_ms"] is not None


def sse_event(obj):
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_openai_sse_with_usage_and_key(server, monkeypatch):
    body = (sse_event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]})
            + sse_event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            + sse_event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
            + b"data: [DONE]\n\n")
    server.scripts.append([head(ctype="text/event-stream"), chunked(body), END])
    c = client(server, OpenAIClient, api_key="sk-secret", num_predict=8)
    assert "sk-secret" not in repr(c)
    record, text = c.chat(MESSAGES)
    assert record["outcome"] == contract.OK and text == "Hi"
    assert record["output_tokens"] == 1 and record["prompt_tokens"] == 5 and record["done_reason"] == "stop"
    assert "sk-secret" not in repr(record)
    req_head, body = server.requests[0]
    assert "Authorization: Bearer sk-secret" in req_head
    sent = orjson.loads(body)
    assert sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 8


def test_gateway_json_document_field(server):
    doc = b'{"recipe":{"text":"Soup"}}'
    server.scripts.append([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(doc), doc)])
    template = {"q": "{{prompt}}", "m": "{{model}}", "n": 1}
    c = client(server, GatewayClient, path="/recipe", template=template, field="recipe.text")
    record, text = c.chat(MESSAGES)
    assert record["outcome"] == contract.OK and text == "Soup"
    assert record["ttft_ms"] is None and record["output_tokens"] is None  # not measurable on one document
    assert orjson.loads(server.requests[0][1]) == {"q": MESSAGES[0]["content"], "m": "m", "n": 1}
    assert server.requests[0][0].startswith("POST /recipe ")


def test_gateway_auto_detects_ndjson_and_sse(server):
    server.scripts.append([head(), chunked(line("A"), FINAL), END])
    server.scripts.append([head(ctype="text/event-stream"), chunked(sse_event({"choices": [{"delta": {"content": "B"}}]}), b"data: [DONE]\n\n"), END])
    c = client(server, GatewayClient)
    assert c.chat(MESSAGES)[1] == "A"
    assert c.chat(MESSAGES)[1] == "B"


def test_gateway_html_is_invalid(server):
    page = b"<!doctype html><html><body>Login</body></html>"
    server.scripts.append([b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)])
    record, _ = client(server, GatewayClient).chat(MESSAGES)
    assert record["outcome"] == contract.INVALID and "HTML page" in record["error"]


def test_gateway_template_needs_prompt():
    with pytest.raises(GatewayConfigError, match=r"no \{\{prompt\}\} placeholder"):
        GatewayClient("http://127.0.0.1:1", "m", template={"q": "hello"})
    assert render({"messages": "{{messages}}", "x": ["{{model}}"]}, "p", "m", MESSAGES) == {"messages": MESSAGES, "x": ["m"]}


def test_one_table_of_apis():
    """The contract's API names, --api's choices and the client registry are one list."""
    from ollama_locust import contract, options
    from ollama_locust.scenarios.clients import CLIENTS

    assert tuple(CLIENTS) == contract.APIS
    api = next(option for option in options.ALL_OPTIONS if option.dest == "api")
    assert api.choices == contract.APIS and api.default in contract.APIS


def test_token_arrivals_bucket_the_content_chunks(server):
    # chunks at ~0, ~0.25 and ~0.27 s after the first: buckets of 100 ms after the send
    script = [head(), chunked(line("A")), 0.25, chunked(line("B")), 0.02, chunked(line("C")), chunked(FINAL), END]
    server.scripts.append(script)
    record, _ = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.OK
    width, _, counts = record["token_arrivals"].partition(":")
    counts = [int(c) for c in counts.split(",")]
    assert width == str(contract.TOKEN_BUCKET_MS) and sum(counts) == 3
    assert counts[int(record["ttft_ms"] // contract.TOKEN_BUCKET_MS)] >= 1  # the first chunk at TTFT
    assert counts[-1] >= 1 and len(counts) >= 3  # the last ones ~0.25 s later, before the last byte
    assert len(counts) <= int(record["e2e_ms"] // contract.TOKEN_BUCKET_MS) + 1


def test_a_stamp_from_before_the_request_is_not_believed(server, monkeypatch):
    # every kernel stamp reads as 5 s old (a clock stepped or shifted under the process): the reply is dated
    # by its reads, never before the request was written (no negative TTFT, no stream_error)
    from ollama_locust import receive_stamps

    monkeypatch.setattr(receive_stamps, "age_of", lambda ancillary, now_unix: 5.0)
    server.scripts.append([head(), chunked(line("A")), 0.05, chunked(line("B")), chunked(FINAL), END])
    record, text = client(server).chat(MESSAGES)
    assert record["outcome"] == contract.OK, record
    assert text == "AB"
    assert 0 <= record["ttft_ms"] < 1000 and record["e2e_ms"] - record["ttft_ms"] == pytest.approx(50, abs=25)
    assert sum(int(c) for c in record["token_arrivals"].partition(":")[2].split(",")) == 2
