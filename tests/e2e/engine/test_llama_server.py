"""llama-cpp-python's OpenAI-compatible server serving the tiny model: the API shapes the load tool
relies on, exact token counts, and one-request-at-a-time serving (like Ollama with NUM_PARALLEL=1)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from llama_engine import ENGINE_MISSING, start_llama_server

N = 40  # max_tokens of the shape tests
PRINTABLE = {chr(b) for b in range(0x20, 0x7F)}


@pytest.fixture
def client(llama_server):
    with httpx.Client(base_url=llama_server, timeout=30.0, trust_env=False) as c:
        yield c


def sse_events(response: httpx.Response) -> list:
    """The ``data:`` payloads of an SSE response, JSON-decoded; ``[DONE]`` stays a string."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def chat_body(model: str, max_tokens: int, **extra) -> dict:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": "You are a cook."},
                         {"role": "user", "content": "A recipe with leeks, please."}], **extra}


def test_models_lists_the_served_model(client, llama_model):
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == [llama_model]


def test_chat_stream_is_role_chunk_content_chunks_finish_chunk_done(client, llama_model):
    body = chat_body(llama_model, N, stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == llama_model for c in chunks)
    role, *content, finish = chunks
    assert role["choices"][0]["delta"] == {"role": "assistant"}
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in content)
    assert all(c["choices"][0]["finish_reason"] is None for c in [role, *content])
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "length"
    # One token per content chunk: counting chunks gives the token count.
    assert len(content) == N
    assert set("".join(c["choices"][0]["delta"]["content"] for c in content)) <= PRINTABLE
    # llama-cpp-python 0.3.36 ignores stream_options.include_usage: no usage anywhere in the stream
    # (docs/engine.md says so; the load tool falls back to counting content chunks).
    assert not any(c.get("usage") for c in chunks)


def test_chat_without_stream_reports_usage_of_max_tokens(client, llama_model):
    reply = client.post("/v1/chat/completions", json=chat_body(llama_model, N)).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"]) == N
    assert reply["usage"]["completion_tokens"] == N
    assert reply["usage"]["prompt_tokens"] > 0


def test_completions_plain_and_streamed(client, llama_model):
    body = {"model": llama_model, "prompt": "Leek soup:", "max_tokens": N}
    reply = client.post("/v1/completions", json=body).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == N
    assert len(reply["choices"][0]["text"]) == N

    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    *tokens, finish = events[:-1]
    assert len(tokens) == N and all(len(t["choices"][0]["text"]) == 1 for t in tokens)
    assert finish["choices"][0]["text"] == "" and finish["choices"][0]["finish_reason"] == "length"


def test_two_concurrent_requests_are_served_one_after_the_other(llama_server, llama_model):
    """The second request's first chunk comes when the first request is done: TTFT is queue wait.
    The first stream also runs to the end (without --interrupt_requests False it would be cut off)."""
    max_tokens = 600  # ~0.3-1 s on the test model
    results: dict[int, dict] = {}

    def run(i: int) -> None:
        body = chat_body(llama_model, max_tokens, stream=True)
        start = time.monotonic()
        first = None
        content = 0
        with httpx.Client(timeout=60.0, trust_env=False) as c:
            with c.stream("POST", llama_server + "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        first = first or time.monotonic()
                        content += '"content"' in line
        results[i] = {"start": start, "first": first, "end": time.monotonic(), "content": content}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for t in threads:
        t.join(timeout=60)
    # The one served first (normally the one sent first; order by first chunk to be sure) and the other.
    a, b = sorted(results.values(), key=lambda r: r["first"])

    assert a["content"] == b["content"] == max_tokens
    first_duration = a["end"] - a["start"]
    second_ttft = b["first"] - b["start"]
    assert b["first"] >= a["end"] - 0.05, results
    assert second_ttft >= 0.8 * (first_duration - 0.1), (second_ttft, first_duration)
    assert a["first"] - a["start"] < 0.5 * first_duration


def test_a_server_that_cannot_start_fails_with_its_log_tail(tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason=ENGINE_MISSING)
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not GGUF")
    with pytest.raises(RuntimeError) as failure:
        with start_llama_server(bad, tmp_path / "server.log", timeout_s=30):
            pass
    message = str(failure.value)
    assert "exited with code" in message and "server.log" in message
    assert len(message.splitlines()) > 1  # the log's tail follows


def test_without_interrupt_requests_false_a_new_request_cuts_the_running_stream(tiny_model, tmp_path):
    """Why the fixture passes --interrupt_requests False: the server's default (True) lets a new
    request end the running stream early, without a finish chunk."""
    pytest.importorskip("llama_cpp.server.app", reason=ENGINE_MISSING)
    max_tokens = 600
    outcome: dict[str, object] = {}

    with start_llama_server(tiny_model, tmp_path / "interrupting.log", "--interrupt_requests", "True") as server:
        body = chat_body(server.model, max_tokens, stream=True)

        def first_request() -> None:
            lines: list[str] = []
            try:
                with httpx.Client(timeout=60.0, trust_env=False) as c:
                    with c.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
                        for line in response.iter_lines():
                            lines.append(line)
                            if len(lines) == 20:
                                outcome["streaming"] = time.monotonic()
            except httpx.TransportError as exc:
                outcome["error"] = type(exc).__name__
            outcome["lines"] = lines

        thread = threading.Thread(target=first_request)
        thread.start()
        deadline = time.monotonic() + 10
        while "streaming" not in outcome and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(timeout=60.0, trust_env=False) as c:
            second = c.post(server.url + "/v1/chat/completions", json={**body, "stream": False}).json()
        thread.join(timeout=60)

    assert second["usage"]["completion_tokens"] == max_tokens
    lines = outcome["lines"]
    assert sum('"content"' in line for line in lines) < max_tokens
    # Seen here: content stops, `data: [DONE]` follows without a finish chunk, then the connection
    # closes mid-body (httpx: RemoteProtocolError). A reader that stops at [DONE] must check for the
    # finish chunk to tell a cut stream from a finished one.
    assert not any('"finish_reason": "' in line for line in lines)
