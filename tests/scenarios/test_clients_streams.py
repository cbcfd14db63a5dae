"""NDJSON / SSE / JSON reply decoders on byte fixtures (no network)."""

import orjson
import pytest

from ollama_locust.scenarios.clients.streams import DocumentDecoder, NDJSONDecoder, SSEDecoder, StreamError


def chat_line(content, **extra):
    obj = {"model": "m", "created_at": "2026-11-23T10:00:00Z", "message": {"role": "assistant", "content": content},
           "done": False}
    obj.update(extra)
    return orjson.dumps(obj) + b"\n"


FINAL = chat_line("", done=True, done_reason="stop", total_duration=10_000_000_000, load_duration=1_000_000,
                  prompt_eval_count=26, prompt_eval_duration=130_000_000, eval_count=3, eval_duration=4_000_000_000)


def feed_all(decoder, pieces):
    """Feed pieces at t = 1.0, 2.0, ...; returns the time the end marker arrived (or None)."""
    for index, piece in enumerate(pieces, start=1):
        if decoder.feed(piece, float(index)):
            return float(index)
    decoder.eof()
    return None


def test_ndjson_chat_whole():
    decoder = NDJSONDecoder("message")
    body = chat_line("Hel") + chat_line("lo") + chat_line("!") + FINAL
    assert feed_all(decoder, [body]) == 1.0
    assert decoder.text == "Hello!"
    assert decoder.chunks == 3
    assert decoder.completion_tokens == 3 and decoder.prompt_tokens == 26
    assert decoder.done_reason == "stop"
    assert decoder.final["total_duration"] == 10_000_000_000


def test_ndjson_split_across_reads_keeps_arrival_times():
    decoder = NDJSONDecoder("message")
    body = chat_line("") + chat_line("Hel") + chat_line("lo") + FINAL
    first_content = body.index(b"Hel")
    # the first content line is split in the middle: it counts when its newline arrives
    pieces = [body[: first_content], body[first_content: first_content + 10], body[first_content + 10: -5], body[-5:]]
    assert feed_all(decoder, pieces) == 4.0
    assert decoder.t_first == 3.0  # the piece that completed the "Hel" line (and "lo" too)
    assert decoder.t_last == 3.0
    assert decoder.text == "Hello"


def test_ndjson_byte_by_byte():
    decoder = NDJSONDecoder("message")
    body = chat_line("a") + chat_line("b") + FINAL
    pieces = [body[i:i + 1] for i in range(len(body))]
    assert feed_all(decoder, pieces) == float(len(body))
    assert decoder.text == "ab"


def test_ndjson_generate_field_and_empty_role_chunk():
    decoder = NDJSONDecoder("response")
    body = (b'{"response":"","done":false}\n{"response":" Yes","done":false}\n'
            b'{"response":"","done":true,"done_reason":"length","eval_count":1}\n')
    feed_all(decoder, [body])
    assert decoder.text == " Yes" and decoder.chunks == 1 and decoder.done_reason == "length"


def test_ndjson_error_line_mid_stream():
    decoder = NDJSONDecoder("message")
    with pytest.raises(StreamError, match="error mid-stream: model runner crashed"):
        feed_all(decoder, [chat_line("a") + b'{"error":"model runner crashed"}\n'])
    assert decoder.text == "a"


@pytest.mark.parametrize("garbage", [b"not json\n", b"[1,2]\n", b'{"message":{"content":"x"\n'])
def test_ndjson_garbage(garbage):
    with pytest.raises(StreamError):
        feed_all(NDJSONDecoder("message"), [chat_line("a"), garbage])


def test_ndjson_no_done_is_a_stream_error():
    with pytest.raises(StreamError, match="without its end marker"):
        feed_all(NDJSONDecoder("message"), [chat_line("a") + chat_line("b")])


def test_ndjson_final_line_without_newline_is_accepted():
    decoder = NDJSONDecoder("message")
    feed_all(decoder, [chat_line("a") + FINAL.rstrip(b"\n")])
    assert decoder.done and decoder.completion_tokens == 3


def test_ndjson_overlong_line_is_bounded():
    decoder = NDJSONDecoder("message", max_line=1000)
    with pytest.raises(StreamError, match="longer than 1000 bytes"):
        for _ in range(100):
            decoder.feed(b"x" * 100, 1.0)
    assert len(decoder._tail) == 0


def test_ndjson_omitted_zero_fields():
    # no content at all and eval_count left out (omitempty): 0 reported tokens, not an estimate
    decoder = NDJSONDecoder("message")
    feed_all(decoder, [b'{"message":{"role":"assistant","content":""},"done":true,"total_duration":5000000}\n'])
    assert decoder.chunks == 0 and decoder.completion_tokens == 0
    # content but eval_count missing (a proxy stripped it): fall back to counting chunks
    decoder = NDJSONDecoder("message")
    feed_all(decoder, [chat_line("x") + b'{"message":{"content":""},"done":true}\n'])
    assert decoder.completion_tokens is None and decoder.chunks == 1


def sse(obj):
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def delta(content=None, role=None, finish=None):
    d = {}
    if role:
        d["role"] = role
    if content is not None:
        d["content"] = content
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


OPENAI_BODY = (sse(delta("", role="assistant")) + sse(delta("Hel")) + sse(delta("lo")) + sse(delta(finish="stop"))
               + sse({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}})
               + b"data: [DONE]\n\n")


def test_sse_openai_with_usage():
    decoder = SSEDecoder()
    assert feed_all(decoder, [OPENAI_BODY]) == 1.0
    assert decoder.text == "Hello" and decoder.chunks == 2
    assert decoder.completion_tokens == 2 and decoder.prompt_tokens == 26
    assert decoder.done_reason == "stop"


def test_sse_split_everywhere_and_crlf():
    body = OPENAI_BODY.replace(b"\n", b"\r\n")
    for size in (1, 3, 7, 64):
        decoder = SSEDecoder()
        pieces = [body[i:i + size] for i in range(0, len(body), size)]
        assert feed_all(decoder, pieces) is not None
        assert decoder.text == "Hello" and decoder.completion_tokens == 2


def test_sse_comments_and_multiline_data():
    body = b": keep-alive\n\nevent: message\ndata: {\"choices\":[{\"delta\":\ndata: {\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"
    decoder = SSEDecoder()
    feed_all(decoder, [body])
    assert decoder.text == "a"


def test_sse_without_usage_estimates():
    body = sse(delta("a")) + sse(delta("b")) + b"data: [DONE]\n\n"
    decoder = SSEDecoder()
    feed_all(decoder, [body])
    assert decoder.completion_tokens is None and decoder.chunks == 2


def test_sse_error_event():
    body = sse(delta("a")) + sse({"error": {"message": "upstream died", "type": "api_error"}})
    with pytest.raises(StreamError, match="upstream died"):
        feed_all(SSEDecoder(), [body])


def test_sse_no_done():
    with pytest.raises(StreamError, match="end marker"):
        feed_all(SSEDecoder(), [sse(delta("a"))])


def test_sse_garbage():
    with pytest.raises(StreamError, match="malformed"):
        feed_all(SSEDecoder(), [b"data: {oops\n\n"])


def test_document_default_and_path():
    decoder = DocumentDecoder()
    feed_all(decoder, [b'{"message":{"role":"assistant","content":"hi"},"done":true,',
                       b'"eval_count":5,"total_duration":100}'])
    assert decoder.text == "hi" and decoder.completion_tokens == 5 and decoder.final is not None
    decoder = DocumentDecoder(path=("recipe", "text"))
    feed_all(decoder, [b'{"recipe":{"text":"soup"}}'])
    assert decoder.text == "soup" and decoder.completion_tokens is None
    with pytest.raises(StreamError, match="no field 'recipe.body'"):
        feed_all(DocumentDecoder(path=("recipe", "body")), [b'{"recipe":{"text":"soup"}}'])
    with pytest.raises(StreamError, match="not JSON"):
        feed_all(DocumentDecoder(), [b"<html>"])


@pytest.mark.parametrize("value", ["n/a", -8829929, 2.5, True, [3], {"n": 1}])
def test_malformed_counts_are_ignored_and_noted(value):
    """A count that is not a non-negative integer is ignored (tokens estimated) and noted, never raised."""
    ndjson = NDJSONDecoder()
    feed_all(ndjson, [chat_line("a"), chat_line("b"), chat_line("", done=True, eval_count=value, prompt_eval_count=value,
                                                                  total_duration=5)])
    assert ndjson.completion_tokens is None and ndjson.prompt_tokens is None
    assert [note.split("=")[0] for note in ndjson.bad_counts] == ["eval_count", "prompt_eval_count"]
    sse = SSEDecoder()
    usage = {"choices": [], "usage": {"completion_tokens": value, "prompt_tokens": 4}}
    feed_all(sse, [b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n', b"data: " + orjson.dumps(usage) + b"\n\n",
                   b"data: [DONE]\n\n"])
    assert sse.completion_tokens is None and sse.prompt_tokens == 4 and len(sse.bad_counts) == 1
    document = DocumentDecoder()
    feed_all(document, [orjson.dumps({"message": {"content": "x"}, "total_duration": 1, "eval_count": value})])
    assert document.completion_tokens is None and document.bad_counts


def test_retry_after_is_parsed_and_bounded():
    import time
    from email.utils import formatdate

    from ollama_locust.scenarios.clients.base import RETRY_AFTER_MAX_S, retry_after_s

    assert retry_after_s("2") == 2.0 and retry_after_s(" 0.5 ") == 0.5
    assert retry_after_s("86400") == RETRY_AFTER_MAX_S and retry_after_s("-5") == 0.0
    assert retry_after_s("soon") is None and retry_after_s("nan") is None and retry_after_s(None) is None
    assert 5 <= retry_after_s(formatdate(time.time() + 10, usegmt=True)) <= 10
