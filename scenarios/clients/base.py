"""One streamed LLM request, from the request bytes to a finished record: the shared driver.

:func:`exchange` sends one request on a :class:`~scenarios.clients.transport.Connection`, reads the
reply into a decoder (``scenarios.clients.streams``), bounds it with two ``gevent.Timeout``s (first
token, whole request), classifies the outcome and fills the record's metrics through
:mod:`scenarios.request_metrics`. It never lets an ``Exception`` escape: every failure becomes an outcome.

A ``BaseException`` that is not ours (``GreenletExit`` when Locust stops the user, a foreign
``gevent.Timeout``, ``KeyboardInterrupt``) is re-raised after the record was completed as ``cut_short``;
the record travels on the exception as ``exc.llm_record`` so the user can still report it.
"""

from __future__ import annotations

import time

import gevent

from ollama_locust import contract

from ollama_locust.scenarios import request_metrics, secrets
from ollama_locust.scenarios.clients.streams import Decoder, StreamError, error_text
from ollama_locust.scenarios.clients.transport import Connection, TransportError

ERROR_BODY_LIMIT = 64 * 1024
_perf = time.perf_counter

RECORD_FIELDS = ("api", "model", "start_time", "outcome", "http_status", "ttft_ms", "e2e_ms", "itl_ms",
                 "output_tokens", "tokens_estimated", "prompt_tokens", "tokens_per_s", "load_ms",
                 "prompt_eval_ms", "eval_ms", "server_total_ms", "queue_wait_ms", "done_reason", "error",
                 "request_id", "token_arrivals", "connect_ms")


def new_record(api: str, model: str, request_id: str) -> dict:
    """A record with every column a client measures, all unmeasured (None)."""
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(api=api, model=model, request_id=request_id, http_status=0)
    return record


def classify_status(status: int) -> str:
    """The outcome of a non-2xx status: rejected for 429/503 ('busy'), http_error otherwise."""
    return contract.REJECTED if status in (429, 503) else contract.HTTP_ERROR


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(secrets.mask(text).split())  # masked before it is cut: no prefix of a key survives
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_html(content_type: str, body: bytes) -> bool:
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    head = body[:200].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def html_page_message(path: str) -> str:
    """The one line for a server that answers a web page where the LLM API should be."""
    return f"the server answered an HTML page for {path}, not the LLM API (check --host / --gateway-path)"


def error_message(status: int, content_type: str, body: bytes, path: str, location=None) -> str:
    """One line for a non-2xx reply: the server's own error text when it gave one. Redirects are not
    followed (by the preflight neither), so credentials never go to another address."""
    if 300 <= status < 400:
        where = f" to {secrets.redact_url(location)}" if isinstance(location, str) and location else ""
        return _one_line(f"HTTP {status}: a redirect{where}, not followed; give the final URL as --host")
    if _looks_html(content_type, body):
        return f"HTTP {status}: {html_page_message(path)}"
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            import orjson

            obj = orjson.loads(body)
            if isinstance(obj, dict) and obj.get("error"):
                text = error_text(obj["error"])
        except ValueError:
            pass
    return _one_line(f"HTTP {status}: {text}" if text else f"HTTP {status}")


RETRY_AFTER_MAX_S = 30.0  # a Retry-After is honoured up to this many seconds


def retry_after_s(value) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), bounded to RETRY_AFTER_MAX_S."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def fill_metrics(record: dict, t_sent: float, t_end: float, decoder: Decoder | None) -> None:
    """Compute the record's metrics (scenarios.request_metrics) from the decoder's raw facts."""
    record["e2e_ms"] = request_metrics.e2e_ms(t_sent, t_end)
    if decoder is None:
        return
    if decoder.streamed:
        record["ttft_ms"] = request_metrics.ttft_ms(t_sent, decoder.t_first)
        record["itl_ms"] = request_metrics.itl_ms(decoder.t_first, decoder.t_last, decoder.chunks)
    if decoder.streamed or decoder.completion_tokens is not None:
        tokens, estimated = request_metrics.output_tokens(decoder.completion_tokens, decoder.chunks)
        record["output_tokens"] = tokens
        record["tokens_estimated"] = estimated
    record["prompt_tokens"] = decoder.prompt_tokens
    record["tokens_per_s"] = request_metrics.tokens_per_s(record["output_tokens"], record["e2e_ms"], record["ttft_ms"])
    record["done_reason"] = decoder.done_reason
    record["token_arrivals"] = request_metrics.token_arrivals(decoder.buckets)
    if decoder.final is not None:
        record.update(request_metrics.server_split(decoder.final))
    if decoder.bad_counts:
        record["bad_counts"] = " ".join(decoder.bad_counts)


def exchange(conn: Connection, path: str, body: bytes, headers: dict, record: dict,
             choose_decoder, first_token_timeout: float, request_timeout: float) -> str:
    """Send one request and read its reply; fill ``record``; return the reply text ('' on failure).

    ``choose_decoder(content_type)`` returns a decoder for the reply, or a string: the outcome
    ``invalid`` with that message (e.g. an HTML page where a stream was expected).
    """
    total = gevent.Timeout(request_timeout) if request_timeout and request_timeout > 0 else None
    first = gevent.Timeout(first_token_timeout) if first_token_timeout and first_token_timeout > 0 else None
    decoder: Decoder | None = None
    response = None
    wall_begun = record["start_time"] = time.time()
    t_sent = t_begun = _perf()
    t_end = t_sent
    try:
        if total is not None:
            total.start()
        if first is not None:
            first.start()
        response = conn.request("POST", path, body, headers)
        t_sent = _mark_sent(record, conn, wall_begun, t_begun)
        record["http_status"] = status = response.status
        if not 200 <= status < 300:
            content_type = response.content_type
            raw = response.read_all(ERROR_BODY_LIMIT)
            t_end = _perf()
            response.release()
            record["outcome"] = classify_status(status)
            record["error"] = error_message(status, content_type, raw, path, response.headers.get("location"))
            if status in (429, 503) and response.headers.get("retry-after"):
                record["_retry_after"] = response.headers["retry-after"]  # for the user's back-off (not a column)
            return ""
        chosen = choose_decoder(response.content_type)
        if isinstance(chosen, str):
            t_end = _perf()
            response.abandon()
            record["outcome"] = contract.INVALID
            record["error"] = chosen
            return ""
        decoder = chosen
        decoder.origin = t_sent
        waiting_first = first is not None
        read = response.read
        feed = decoder.feed
        reads = 0
        while True:
            data = read()
            now = response.arrived if data else _perf()
            if not data:
                t_end = now
                decoder.eof()
                break
            if feed(data, now):
                t_end = now
                break
            if waiting_first and decoder.t_first is not None:
                first.cancel()
                waiting_first = False
            reads += 1
            if reads % YIELD_EVERY == 0:  # a target that sends as fast as it can: the data is always ready,
                _bounded(t_sent, total, request_timeout, first if waiting_first else None, first_token_timeout)
        if first is not None:
            first.cancel()
        if total is not None:
            total.cancel()
        if decoder.streamed and not response.complete:
            _drain(response)
        else:
            response.release()
        fill_metrics(record, t_sent, t_end, decoder)
        if decoder.chunks == 0:
            record["outcome"] = contract.EMPTY
            record["error"] = "the reply had no content"
            return ""
        record["outcome"] = contract.OK
        return decoder.text
    except gevent.Timeout as exc:
        t_sent = _mark_sent(record, conn, wall_begun, t_begun)
        if exc is not total and exc is not first:
            _cut_short(record, t_sent, decoder, conn, exc)
            raise
        t_end = _perf()
        conn.close()
        fill_metrics(record, t_sent, t_end, decoder)
        record["outcome"] = contract.TIMEOUT
        if exc is first:
            record["error"] = f"no first token within {first_token_timeout:g}s (--first-token-timeout)"
        else:
            record["error"] = f"reply not finished within {request_timeout:g}s (--request-timeout)"
        return ""
    except TransportError as exc:
        t_end = _perf()
        t_sent = _mark_sent(record, conn, wall_begun, t_begun)
        conn.close()
        fill_metrics(record, t_sent, t_end, decoder)
        record["outcome"] = contract.HTTP_ERROR if exc.before_status else contract.STREAM_ERROR
        record["error"] = _one_line(str(exc))
        return ""
    except StreamError as exc:
        t_end = _perf()
        t_sent = _mark_sent(record, conn, wall_begun, t_begun)
        conn.close()
        fill_metrics(record, t_sent, t_end, decoder)
        record["outcome"] = contract.STREAM_ERROR
        record["error"] = _one_line(str(exc))
        return ""
    except Exception as exc:  # a bug or an unexpected library error: still one record, never an escape
        t_end = _perf()
        t_sent = _mark_sent(record, conn, wall_begun, t_begun)
        conn.close()
        try:
            fill_metrics(record, t_sent, t_end, decoder)
        except Exception:  # the metrics are what failed: the record keeps its latency only
            record["e2e_ms"] = request_metrics.e2e_ms(t_sent, t_end)
        record["outcome"] = contract.STREAM_ERROR if record["http_status"] else contract.HTTP_ERROR
        record["error"] = _one_line(f"{type(exc).__name__}: {exc}")
        return ""
    except BaseException as exc:
        _cut_short(record, _mark_sent(record, conn, wall_begun, t_begun), decoder, conn, exc)
        raise
    finally:
        if first is not None:
            first.close()
        if total is not None:
            total.close()


def _mark_sent(record: dict, conn: Connection, wall_begun: float, t_begun: float) -> float:
    """The request's clock: from the moment its bytes were written (``conn.sent_at``), so a new
    connection's connect (``connect_ms``) and the hub's other work meanwhile stay out of TTFT and E2E;
    ``start_time`` moves with it. A request that was never written keeps its clock from the beginning."""
    sent = conn.sent_at
    record["connect_ms"] = None if conn.connect_ms is None else round(conn.connect_ms, 3)
    if sent is None or sent < t_begun:
        record["start_time"] = wall_begun
        return t_begun
    record["start_time"] = wall_begun + (sent - t_begun)
    return sent


YIELD_EVERY = 8  # reads between turns of the hub while a reply's data is always ready


def _bounded(t_sent: float, total, request_timeout: float, first, first_token_timeout: float) -> None:
    """Let the hub run (other users, heartbeats) and enforce the timeouts even if their timers are late."""
    gevent.sleep(0)
    elapsed = _perf() - t_sent
    if total is not None and elapsed > request_timeout:
        raise total
    if first is not None and elapsed > first_token_timeout:
        raise first


def _drain(response) -> None:
    """The end marker arrived but not the end of the HTTP message (the last chunk of a chunked body):
    read it so the connection can be reused; anything unexpected drops the connection instead."""
    try:
        with gevent.Timeout(1.0, False):
            while response.read():
                pass
        if response.complete:
            response.release()
            return
    except TransportError:
        pass
    response.abandon()


def _cut_short(record: dict, t_sent: float, decoder, conn: Connection, exc: BaseException) -> None:
    conn.close()
    try:
        fill_metrics(record, t_sent, _perf(), decoder)
    except Exception:
        pass
    record["outcome"] = contract.CUT_SHORT
    record["error"] = f"stopped while running ({type(exc).__name__})"
    try:
        exc.llm_record = record
    except (AttributeError, TypeError):
        pass
