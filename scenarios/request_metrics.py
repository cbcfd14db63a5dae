"""The per-request metrics, defined once.

Every number a request record carries is computed here, from raw timestamps the client took
(``time.perf_counter()`` seconds) and the fields the server put in its final chunk. The clients only
collect raw facts; they never compute a metric themselves. ``REQUEST_METRICS`` lists each metric with its
label and unit so that reports and docs can loop over them.

Definitions (issue 3, item 3):

* **TTFT** (time to first token): request sent -> the first chunk whose content is non-empty.
  A role-only or empty chunk is not a token. Headers alone are not a token.
* **E2E**: request sent -> the last byte of the reply (the ``done`` line / ``[DONE]`` event), or the
  moment the failure was detected.
* **ITL** (inter-token latency): the mean gap between consecutive content chunks after the first,
  i.e. ``(t_last - t_first) / (n - 1)`` for ``n >= 2`` content chunks (the gaps telescope, so the
  mean needs only the first and last time and the count).
* **Output tokens**: ``eval_count`` (Ollama) or ``usage.completion_tokens`` (OpenAI); when the
  server reports neither, the number of content chunks, flagged ``tokens_estimated``.
* **Decode tokens/s** of one request: ``(output_tokens - 1) / (E2E - TTFT)``: the first token is
  excluded because its time is counted in TTFT.
* **Server split** from Ollama's final chunk (nanoseconds -> ms): ``load_ms``, ``prompt_eval_ms``,
  ``eval_ms``, ``server_total_ms`` and **queue wait** = total - load - prompt_eval - eval, the time
  spent waiting for a NUM_PARALLEL slot, which Ollama reports nowhere else. Ollama omits zero fields
  (``omitempty``): a missing duration counts as 0, but only when the final chunk arrived at all.
* **Token arrivals**: content chunks counted per ``TOKEN_BUCKET_MS`` bucket after the send (one counter
  per bucket, no per-chunk timestamp kept), widened for long replies; the report spreads
  ``output_tokens`` over them to count the tokens that arrived inside a step's window.
"""

from __future__ import annotations

from dataclasses import dataclass

from ollama_locust import contract
from ollama_locust.contract import TOKEN_BUCKET_MS, TOKEN_BUCKETS_MAX

NS_PER_MS = 1_000_000.0


@dataclass(frozen=True)
class RequestMetric:
    key: str  # record column
    label: str  # for tables and plots
    unit: str

    @property
    def doc(self) -> str:
        """The column's definition, as the contract documents it (one wording)."""
        return contract.COLUMN_DOCS[self.key]


REQUEST_METRICS: tuple[RequestMetric, ...] = (
    RequestMetric("ttft_ms", "TTFT", "ms"),
    RequestMetric("e2e_ms", "Latency", "ms"),
    RequestMetric("itl_ms", "Inter-token latency", "ms"),
    RequestMetric("output_tokens", "Output tokens", "tokens"),
    RequestMetric("prompt_tokens", "Prompt tokens", "tokens"),
    RequestMetric("tokens_per_s", "Tokens/s (per request)", "tokens/s"),
    RequestMetric("load_ms", "Load", "ms"),
    RequestMetric("prompt_eval_ms", "Prompt eval", "ms"),
    RequestMetric("eval_ms", "Eval", "ms"),
    RequestMetric("server_total_ms", "Server total", "ms"),
    RequestMetric("queue_wait_ms", "Queue wait", "ms"),
)

_DURATIONS = (
    ("load_duration", "load_ms"),
    ("prompt_eval_duration", "prompt_eval_ms"),
    ("eval_duration", "eval_ms"),
    ("total_duration", "server_total_ms"),
)


def ms_between(t_start: float, t_end: float | None) -> float | None:
    """Milliseconds from ``t_start`` to ``t_end`` (perf_counter seconds); None when ``t_end`` is None."""
    if t_end is None:
        return None
    return (t_end - t_start) * 1000.0


def ttft_ms(t_sent: float, t_first_content: float | None) -> float | None:
    """TTFT: request sent -> first chunk with non-empty content; None when no content arrived."""
    return ms_between(t_sent, t_first_content)


def e2e_ms(t_sent: float, t_end: float) -> float:
    """E2E latency: request sent -> last byte of the reply, or the failure."""
    return (t_end - t_sent) * 1000.0


def itl_ms(t_first_content: float | None, t_last_content: float | None, content_chunks: int) -> float | None:
    """Mean gap between consecutive content chunks after the first; None with fewer than 2 chunks."""
    if content_chunks < 2 or t_first_content is None or t_last_content is None:
        return None
    return (t_last_content - t_first_content) * 1000.0 / (content_chunks - 1)


def output_tokens(reported: int | None, content_chunks: int) -> tuple[int, bool]:
    """(output tokens, estimated): the server's count when it gave one, else the content chunk count."""
    if reported is not None:
        return int(reported), False
    return content_chunks, True


def tokens_per_s(tokens: int | None, e2e: float | None, ttft: float | None) -> float | None:
    """Decode rate of one request: (output_tokens - 1) / (E2E - TTFT), per second.

    None when it cannot be measured: fewer than 2 tokens, no TTFT, or no decode time.
    """
    if tokens is None or tokens < 2 or e2e is None or ttft is None:
        return None
    decode_ms = e2e - ttft
    if decode_ms <= 0:
        return None
    return (tokens - 1) * 1000.0 / decode_ms


def token_arrivals(buckets: list[int]) -> str | None:
    """The ``token_arrivals`` cell from content chunks per ``contract.TOKEN_BUCKET_MS`` bucket after the send.

    ``'W:c0,c1,...'``: ``c_i`` chunks arrived in ``[i*W, (i+1)*W)`` ms. A reply longer than
    ``TOKEN_BUCKETS_MAX`` fine buckets gets ``W`` widened by a whole factor (neighbouring buckets summed),
    so the cell stays short. None when no content arrived.
    """
    if not buckets:
        return None
    factor = -(-len(buckets) // TOKEN_BUCKETS_MAX)
    if factor > 1:
        buckets = [sum(buckets[i:i + factor]) for i in range(0, len(buckets), factor)]
    return f"{TOKEN_BUCKET_MS * factor}:" + ",".join(map(str, buckets))


def server_split(final: dict | None) -> dict[str, float | None]:
    """The server's own split of the request from Ollama's final chunk, in ms.

    Returns ``load_ms, prompt_eval_ms, eval_ms, server_total_ms, queue_wait_ms``. All None when there
    was no final chunk, or it carried no duration at all (an OpenAI reply, a gateway that strips
    them). Otherwise a missing duration is 0 (Ollama's omitempty). Queue wait needs the total; it is
    clamped at 0 (clock rounding can make it a few ns negative).
    """
    out: dict[str, float | None] = {"load_ms": None, "prompt_eval_ms": None, "eval_ms": None,
                                    "server_total_ms": None, "queue_wait_ms": None}
    if not final or not any(field in final for field, _ in _DURATIONS):
        return out
    for field, key in _DURATIONS:
        value = final.get(field)
        out[key] = _ns_to_ms(value)
    if "total_duration" not in final:
        out["server_total_ms"] = None
        return out
    wait = out["server_total_ms"] - out["load_ms"] - out["prompt_eval_ms"] - out["eval_ms"]
    out["queue_wait_ms"] = round(max(wait, 0.0), 6)  # ns resolution; no float dust
    return out


def _ns_to_ms(value) -> float:
    if value is None:
        return 0.0
    try:
        return round(float(value) / NS_PER_MS, 6)
    except (TypeError, ValueError):
        return 0.0
