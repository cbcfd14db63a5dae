"""The metrics of one step, defined once.

Every number in the results table, ``results.json``, the plots and ``compare`` comes from ``STEP_METRICS``:
a key (``results.json``, unit in the name), the table label, the unit, the definition (written into
``docs/reports.md`` and ``results.json``) and the function that computes it from a ``Sample``.

Percentiles are exact, over the per-request records: ``numpy.percentile`` with its default
``linear`` method (interpolating between the two closest ranks; a single value is its own
percentile). Latencies are over successful requests (outcome ``ok``) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ollama_locust.stats import format_ratio, format_seconds

PERCENTILE_METHOD = "linear"
MIN_P95_N = 20  # a p95 over fewer requests is marked ``*`` and judged by no verdict
PERCENTILE_TEXT = (
    "exact, from the per-request records: numpy.percentile with method='linear' "
    "(linear interpolation between the two closest ranks)"
)


@dataclass
class Sample:
    """The requests of one group (a step, or a step × user class), as plain numpy arrays.

    ``e2e_ms``, ``ttft_ms`` and ``tokens_per_s`` hold the successful requests' measured values
    (empty cells dropped); ``window_s`` is the step's measured duration (``nan`` when unknown).
    """

    requests: int = 0  # records counted in the step (settle excluded), all outcomes
    cut_short: int = 0
    ok: int = 0
    e2e_ms: np.ndarray = None  # type: ignore[assignment]
    ttft_ms: np.ndarray = None  # type: ignore[assignment]
    tokens_per_s: np.ndarray = None  # type: ignore[assignment]
    ok_output_tokens: float = 0.0
    window_s: float = math.nan
    tokens_in_window: float = math.nan  # output tokens that arrived inside the window (_window.Arrivals)
    completed: float = math.nan  # successful requests that completed inside the window
    users_mean: float = math.nan  # time-weighted mean of the users running (stages.csv), nan: not measured
    dropped: int = 0  # open-loop arrivals the generator did not send (--max-in-flight)
    offered_rate: float = math.nan  # a rate stage's offered requests/s (stages.csv rate)
    in_flight: np.ndarray = None  # type: ignore[assignment]  # requests in flight at each request's send (itself included)
    send_lag_ms: np.ndarray = None  # type: ignore[assignment]  # open loop: how late each request was sent (measured ones)

    def __post_init__(self) -> None:
        empty = np.empty(0)
        for name in ("e2e_ms", "ttft_ms", "tokens_per_s", "in_flight", "send_lag_ms"):
            if getattr(self, name) is None:
                setattr(self, name, empty)


def percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile (0-100) by ``PERCENTILE_METHOD``; ``nan`` for no values."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(values, q, method=PERCENTILE_METHOD))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _max(values: np.ndarray) -> float:
    return float(values.max()) if len(values) else math.nan


def _success_rate(s: Sample) -> float:
    judged = s.requests - s.cut_short - s.dropped
    return s.ok / judged if judged > 0 else math.nan


def _per_window(amount: float, s: Sample) -> float:
    if not (s.window_s > 0):
        return math.nan
    return amount / s.window_s


@dataclass(frozen=True)
class StepMetric:
    key: str  # results.json key; the unit is in the name
    label: str  # table column header
    unit: str  # ms | ratio | count | tok/s | req/s
    how: str  # the definition, as written in the docs and results.json
    compute: Callable[[Sample], float]
    higher_is_better: bool = False
    compare: bool = False  # shown side by side by `compare`
    plot: str = ""  # which figure shows it: latency | throughput | ""


WINDOW_TEXT = "the step's window (stage start + settle to stage end, from stages.csv)"

STEP_METRICS: tuple[StepMetric, ...] = (
    StepMetric("users_held", "Users held", "users",
           "time-weighted mean of the users running during the stage, from the master's samples (stages.csv "
           "users_mean); n/a when the run did not record it",
           lambda s: s.users_mean),
    StepMetric("requests", "Requests", "count",
           "requests started in the step, all outcomes (cut-short ones included; settle window excluded)",
           lambda s: float(s.requests)),
    StepMetric("completed", "Completed", "count",
           "successful requests that completed (start + e2e) inside " + WINDOW_TEXT + ", whichever step they "
           "started in",
           lambda s: s.completed),
    StepMetric("success_rate", "Success rate", "ratio",
           "ok / (requests - cut short): requests still running when the test stopped are neither",
           _success_rate, higher_is_better=True, compare=True),
    StepMetric("n", "n", "count",
           f"successful requests the latency columns are computed over; a p95 from fewer than {MIN_P95_N} is "
           "marked * and no verdict rests on it",
           lambda s: float(len(s.e2e_ms))),
    StepMetric("avg_ms", "Avg", "ms", "mean end-to-end latency (request sent -> last byte) of successful requests",
           lambda s: _mean(s.e2e_ms), compare=True),
    StepMetric("p50_ms", "p50", "ms", "median end-to-end latency of successful requests",
           lambda s: percentile(s.e2e_ms, 50), compare=True, plot="latency"),
    StepMetric("p95_ms", "p95", "ms", "95th percentile end-to-end latency of successful requests",
           lambda s: percentile(s.e2e_ms, 95), compare=True, plot="latency"),
    StepMetric("max_ms", "Max", "ms", "slowest successful request, end to end",
           lambda s: _max(s.e2e_ms)),
    StepMetric("ttft_p50_ms", "TTFT p50", "ms", "median time to first token of successful requests",
           lambda s: percentile(s.ttft_ms, 50), compare=True, plot="latency"),
    StepMetric("ttft_p95_ms", "TTFT p95", "ms", "95th percentile time to first token of successful requests",
           lambda s: percentile(s.ttft_ms, 95), plot="latency"),
    StepMetric("tokens_per_s_request", "Tokens/s (per request)", "tok/s",
           "median decode rate of one successful request: (output_tokens - 1) / (e2e - ttft)",
           lambda s: percentile(s.tokens_per_s, 50), higher_is_better=True, compare=True, plot="throughput"),
    StepMetric("tokens_per_s_total", "Tokens/s (total)", "tok/s",
           "output tokens that arrived inside " + WINDOW_TEXT + ", every reply's, spread over its token_arrivals "
           "buckets (a bucket cut by the window's edge split linearly), / the window's length: what the server "
           "delivered, so never above its capacity",
           lambda s: _per_window(s.tokens_in_window, s), higher_is_better=True, compare=True, plot="throughput"),
    StepMetric("req_per_s", "Req/s", "req/s",
           "Completed / the window's length (goodput)",
           lambda s: _per_window(s.completed, s), higher_is_better=True, compare=True, plot="throughput"),
)
# The columns a rate run's table adds in front (--shape rate; nan for a stage of users). Its table shows them,
# then STEP_METRICS without "Users held" (a rate stage holds no users).
RATE_METRICS: tuple[StepMetric, ...] = (
    StepMetric("offered_rate", "Offered (req/s)", "req/s",
           "the rate stage's open-loop arrival rate, requests/s across all load processes (stages.csv rate)",
           lambda s: s.offered_rate, compare=True),
    StepMetric("achieved_rate", "Achieved (req/s)", "req/s",
           "requests sent to the target (Requests - Dropped) that started inside " + "the step's window, / the window's "
           "length: the arrival rate the server really got",
           lambda s: _per_window(float(s.requests - s.dropped), s) if is_number(s.offered_rate) else math.nan,
           higher_is_better=True, compare=True),
    StepMetric("dropped", "Dropped", "count",
           "arrivals the load generator did not send because --max-in-flight requests were running (outcome "
           "dropped): the offered rate was not delivered; left out of the success rate",
           lambda s: float(s.dropped) if is_number(s.offered_rate) else math.nan),
    StepMetric("in_flight_p50", "In flight p50", "requests",
           "median of the requests in flight (this one included) at each request's send, from the records' "
           "start..end intervals",
           lambda s: percentile(s.in_flight, 50) if is_number(s.offered_rate) else math.nan),
    StepMetric("in_flight_p95", "In flight p95", "requests",
           "95th percentile of the same: the concurrency the rate put on the server",
           lambda s: percentile(s.in_flight, 95) if is_number(s.offered_rate) else math.nan),
    StepMetric("send_lag_p99_ms", "Send lag p99", "ms",
           "99th percentile of how late the load generator sent the step's requests after their scheduled arrival "
           "(requests.csv send_lag_ms): near 0 the latencies are the server's; large, the generator fell behind",
           lambda s: percentile(s.send_lag_ms, 99) if is_number(s.offered_rate) else math.nan),
)
STEP_METRIC_BY_KEY: dict[str, StepMetric] = {m.key: m for m in STEP_METRICS + RATE_METRICS}


def table_metrics(rate_run: bool) -> tuple[StepMetric, ...]:
    """The columns of a step table: a rate run's (RATE_METRICS, then STEP_METRICS but Users held) or STEP_METRICS."""
    if not rate_run:
        return STEP_METRICS
    return tuple(m for m in RATE_METRICS if m.key != "offered_rate") + \
        tuple(m for m in STEP_METRICS if m.key != "users_held")  # the key column shows the offered rate


def compute_all(sample: Sample) -> dict[str, float]:
    metrics = {m.key: m.compute(sample) for m in STEP_METRICS}
    if is_number(sample.offered_rate):
        metrics.update({m.key: m.compute(sample) for m in RATE_METRICS})
    return metrics


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_value(unit: str, value) -> str:
    """A metric value as shown in markdown; '–' when it could not be measured."""
    if unit == "users" and not is_number(value):
        return "n/a"
    if not is_number(value):
        return "–"
    if unit == "ms":
        return format_seconds(value)
    if unit == "ratio":
        return format_ratio(value)
    if unit == "users":
        return f"{value:.1f}" if is_number(value) else "n/a"
    if unit == "count":
        return f"{int(value):,}".replace(",", " ")
    if unit == "tok/s":
        return f"{value:.1f}"
    if unit == "req/s":
        return f"{value:.2f}"
    return f"{value:g}"


SIM_SETTINGS = ("profile", "num_parallel", "max_queue")  # the simulator's settings a report names


def format_settings(settings: dict, keys: tuple[str, ...]) -> str:
    """Some settings of a dict (e.g. run.json's simulator) as "key value, key value", in the dict's order."""
    return ", ".join(f"{k} {v}" for k, v in settings.items() if k in keys)


def format_metric(key: str, value) -> str:
    return format_value(STEP_METRIC_BY_KEY[key].unit, value)


def clean(value):
    """A value for results.json: nan/inf become null, numpy scalars plain Python."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
