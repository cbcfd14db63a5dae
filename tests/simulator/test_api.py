"""Every endpoint's shape and every error of ../shared/ollama-api.md, over real HTTP on 127.0.0.1."""

import json
import socket
from urllib.parse import urlparse

import httpx
import pytest

NS = ("total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration")


@pytest.fixture
def url(sim):
    return sim(profile="instant", num_parallel=4, models="llama3.2:latest,qwen2.5:1.5b")


def post(url, path, body=None, raw=None, **kw):
    content = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return httpx.post(url + path, content=content, timeout=10, **kw)


def test_root_version_tags(url):
    r = httpx.get(url + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert r.headers["content-type"].startswith("text/plain")
    h = httpx.head(url + "/")
    assert h.status_code == 200 and h.content == b""
    assert httpx.get(url + "/api/version").json() == {"version": "0.33.0"}
    models = httpx.get(url + "/api/tags").json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:1.5b"]
    m = models[0]
    assert set(m) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert m["details"]["format"] == "gguf" and m["details"]["families"] == ["llama"]
    assert httpx.get(url + "/nope").status_code == 404


def test_generate_stream_ndjson_and_final_metrics(url):
    r = post(url, "/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert all(x["done"] is False and x["model"] == "llama3.2" for x in lines[:-1])
    assert all(x["created_at"].endswith("Z") for x in lines)
    final = lines[-1]
    assert final["done"] is True and final["response"] == "" and final["done_reason"] == "stop"
    assert isinstance(final["context"], list)
    assert final["eval_count"] == len(lines) - 1
    assert "".join(x["response"] for x in lines[:-1])
    for k in ("total_duration", "load_duration", "prompt_eval_count", "eval_count"):
        assert isinstance(final[k], int) and final[k] > 0


def test_generate_non_stream_and_num_predict_length(url):
    r = post(url, "/api/generate", {"model": "llama3.2:latest", "prompt": "hi", "stream": False,
                                    "options": {"num_predict": 7}})
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["done"] is True and body["done_reason"] == "length" and body["eval_count"] == 7
    assert body["response"]


def test_same_seed_same_reply_and_options_seed(url):
    req = {"model": "llama3.2", "prompt": "tell me about cells", "stream": False}
    a = post(url, "/api/generate", req).json()["response"]
    assert post(url, "/api/generate", req).json()["response"] == a
    c = post(url, "/api/generate", dict(req, options={"seed": 42})).json()["response"]
    assert c != a and post(url, "/api/generate", dict(req, options={"seed": 42})).json()["response"] == c


def test_format_json_recipe_is_a_valid_object(url):
    body = post(url, "/api/chat", {"model": "llama3.2", "stream": False, "format": "json",
                                   "messages": [{"role": "user", "content": "A recipe with leeks please"}]}).json()
    obj = json.loads(body["message"]["content"])
    assert isinstance(obj["ingredients"], list) and isinstance(obj["steps"], list) and obj["title"]


@pytest.mark.parametrize("num_predict", [200, 60, 30])
def test_format_schema_gives_a_conforming_object_within_num_predict(url, num_predict):
    """A JSON schema ``format`` (Ollama) / ``response_format: json_schema`` (OpenAI): the reply conforms to
    the schema and ends (done_reason stop) within num_predict, as constrained decoding of a bounded schema."""
    import jsonschema

    from ollama_locust.scenarios.recipe import RECIPE_SCHEMA

    messages = [{"role": "user", "content": "Suggest a recipe I can cook with: leeks, potatoes, butter."}]
    native = post(url, "/api/chat", {"model": "llama3.2", "stream": False, "format": RECIPE_SCHEMA,
                                     "messages": messages, "options": {"num_predict": num_predict}}).json()
    openai = post(url, "/v1/chat/completions", {
        "model": "llama3.2", "messages": messages, "max_tokens": num_predict,
        "response_format": {"type": "json_schema", "json_schema": {"name": "recipe", "schema": RECIPE_SCHEMA}}}).json()
    for text, tokens, reason in ((native["message"]["content"], native["eval_count"], native["done_reason"]),
                                 (openai["choices"][0]["message"]["content"], openai["usage"]["completion_tokens"],
                                  openai["choices"][0]["finish_reason"])):
        obj = json.loads(text)
        jsonschema.validate(obj, RECIPE_SCHEMA)
        assert tokens <= num_predict and reason == "stop", (tokens, reason, text)
        if num_predict == 200:  # a realistic recipe, not the bare minimum
            assert len(obj["ingredients"]) >= 3 and len(obj["steps"]) >= 2, obj
    small = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12},
                                              "score": {"type": "integer", "minimum": 1, "maximum": 5}},
             "required": ["answer", "score"]}
    body = post(url, "/api/generate", {"model": "llama3.2", "stream": False, "format": small,
                                       "prompt": "Rate this essay"}).json()
    jsonschema.validate(json.loads(body["response"]), small)


def test_chat_stream_and_final(url):
    r = post(url, "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}]})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert all(x["message"]["role"] == "assistant" for x in lines)
    assert lines[-1]["done"] and lines[-1]["message"]["content"] == "" and "context" not in lines[-1]
    assert lines[-1]["eval_count"] == len(lines) - 1


def test_empty_prompt_loads_and_keep_alive_zero_unloads(url):
    body = post(url, "/api/generate", {"model": "llama3.2"}).json()
    assert body["done"] and body["done_reason"] == "load"
    assert [m["name"] for m in httpx.get(url + "/api/ps").json()["models"]] == ["llama3.2:latest"]
    body = post(url, "/api/generate", {"model": "llama3.2", "keep_alive": 0}).json()
    assert body["done_reason"] == "unload"
    assert httpx.get(url + "/api/ps").json() == {"models": []}


def test_ps_and_show(url):
    post(url, "/api/generate", {"model": "qwen2.5:1.5b", "prompt": "x", "stream": False, "keep_alive": "1h"})
    ps = httpx.get(url + "/api/ps").json()["models"]
    assert ps[0]["name"] == "qwen2.5:1.5b" and ps[0]["context_length"] == 4096
    assert ps[0]["size_vram"] == 0 or ps[0]["size_vram"] == ps[0]["size"]
    assert ps[0]["expires_at"][:4].isdigit()
    show = post(url, "/api/show", {"model": "llama3.2"}).json()
    assert set(show) >= {"modelfile", "parameters", "template", "details", "model_info", "capabilities", "modified_at"}
    assert show["model_info"]["llama.context_length"] > 0
    assert post(url, "/api/show", {"name": "llama3.2"}).status_code == 200
    assert post(url, "/api/show", {"model": "foo"}).json() == {"error": "model 'foo' not found"}
    assert post(url, "/api/show", {}).status_code == 400


@pytest.mark.parametrize("path,body,raw,status,error", [
    ("/api/generate", None, b"", 400, "missing request body"),
    ("/api/chat", None, b"", 400, "missing request body"),
    ("/api/generate", None, b"x", 400, "invalid character 'x' looking for beginning of value"),
    ("/api/generate", {"prompt": "hi"}, None, 404, "model '' not found"),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, None, 400, "model is required"),
    ("/api/generate", {"model": "foo", "prompt": "hi"}, None, 404, "model 'foo' not found"),
    ("/api/chat", {"model": "foo", "messages": []}, None, 404, "model 'foo' not found"),
    ("/api/generate", {"model": "llama3.2", "prompt": "hi", "keep_alive": [1]}, None, 400,
     "Unsupported type: '[]interface {}'"),
    ("/api/generate", {"model": "llama3.2", "prompt": "hi", "keep_alive": "soon"}, None, 400,
     'time: invalid duration "soon"'),
])
def test_native_errors(url, path, body, raw, status, error):
    r = post(url, path, body, raw)
    assert r.status_code == status
    assert r.json() == {"error": error}


def test_openai_chat_non_stream(url):
    r = post(url, "/v1/chat/completions", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
                                           "max_tokens": 5})
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["system_fingerprint"] == "fp_ollama"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5


def sse(text):
    events = [e[len("data: "):] for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_openai_chat_stream_with_usage(url):
    r = post(url, "/v1/chat/completions", {"model": "llama3.2", "stream": True, "max_tokens": 4,
                                           "stream_options": {"include_usage": True},
                                           "messages": [{"role": "user", "content": "hi"}]})
    assert r.headers["content-type"] == "text/event-stream"
    ev = sse(r.text)
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in e["choices"][0]["delta"] for e in ev[1:-2])
    assert [e["choices"][0]["delta"]["content"] for e in ev[1:5]]
    assert ev[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] == 4
    no_usage = sse(post(url, "/v1/chat/completions", {"model": "llama3.2", "stream": True, "max_tokens": 2,
                                                      "messages": [{"role": "user", "content": "hi"}]}).text)
    assert "usage" not in no_usage[-1]


def test_openai_completions_and_models(url):
    body = post(url, "/v1/completions", {"model": "llama3.2", "prompt": "once", "max_tokens": 3}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"]
    ev = sse(post(url, "/v1/completions", {"model": "llama3.2", "prompt": "once", "max_tokens": 3,
                                           "stream": True}).text)
    assert ev[0]["object"] == "text_completion" and ev[0]["id"].startswith("cmpl-")
    assert ev[-1]["choices"][0]["finish_reason"] == "length"
    models = httpx.get(url + "/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0] == {"id": "llama3.2:latest", "object": "model", "created": models["data"][0]["created"],
                                 "owned_by": "library"}


@pytest.mark.parametrize("body,status,kind,message", [
    ({"model": "llama3.2", "messages": []}, 400, "invalid_request_error", "[] is too short - 'messages'"),
    ({"model": "foo", "messages": [{"role": "user", "content": "x"}]}, 404, "not_found_error",
     "model 'foo' not found"),
])
def test_openai_errors(url, body, status, kind, message):
    r = post(url, "/v1/chat/completions", body)
    assert r.status_code == status
    assert r.json() == {"error": {"message": message, "type": kind, "param": None, "code": None}}


def raw_request(url, data: bytes, read_until=b"") -> bytes:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            part = s.recv(65536)
            if not part:
                return out
            out += part
            if read_until and read_until in out:
                return out


def test_headers_only_with_first_chunk_and_keep_alive_reuse(sim):
    url = sim(profile="instant", num_parallel=1, decode_tps=20)
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 3}}).encode()
    req = (b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    out = raw_request(url, req + b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"application/x-ndjson" in head
    assert rest.count(b'"done":false') == 3 and b'"done":true' in rest
    assert rest.endswith(b'{"version":"0.33.0"}')  # the second request on the same connection


def test_non_local_host_header_is_forbidden(url):
    r = httpx.get(url + "/api/version", headers={"Host": "evil.example.com"})
    assert r.status_code == 403
    assert httpx.get(url + "/api/version", headers={"Host": "localhost:11434"}).status_code == 200
