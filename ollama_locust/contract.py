"""The contract between the load side and the report side: the request record and the run folder's names.

One record per LLM request, one row of ``requests.csv`` in the run folder. Raw timings carry their
unit in the name; a value that could not be measured is left empty (never 0 pretending to be a
measurement). ``reports`` reads the files with pandas and never imports the load side; both import this module
(it sits below both), so a name changes in one place.

This module imports nothing heavy: workers, the master and the report all use it.
"""

from __future__ import annotations

# Outcome classes. ``ok`` is the only success.
OK = "ok"
REJECTED = "rejected"  # 429 / 503: the server or gateway said "busy"
TIMEOUT = "timeout"  # no first token / no end within the limits
HTTP_ERROR = "http_error"  # any other non-2xx status, or a connection that failed before a status
STREAM_ERROR = "stream_error"  # malformed line, {"error":...} mid-stream, dropped connection, no done
EMPTY = "empty"  # finished, but no content at all
INVALID = "invalid"  # content failed the scenario's semantic check (e.g. recipe JSON)
CUT_SHORT = "cut_short"  # still running when the test stopped: neither a success nor a failure of the target
# An open-loop arrival (--shape rate) the load generator did not send: this process already had its share of
# --max-in-flight requests running. Never reached the target: neither a success nor a failure of it, but
# the offered load was not delivered (the report says how many, per step).
DROPPED = "dropped"

# The APIs a user can call (``--api``; the record's ``api`` column). scenarios.clients.CLIENTS maps each to its
# client class; the native Ollama ones are checked through /api/tags, the others through /v1/models.
OLLAMA_CHAT, OLLAMA_GENERATE, OPENAI, GATEWAY = "ollama-chat", "ollama-generate", "openai", "gateway"
APIS = (OLLAMA_CHAT, OLLAMA_GENERATE, OPENAI, GATEWAY)
OLLAMA_NATIVE_APIS = (OLLAMA_CHAT, OLLAMA_GENERATE)

OUTCOMES = (OK, REJECTED, TIMEOUT, HTTP_ERROR, STREAM_ERROR, EMPTY, INVALID, CUT_SHORT, DROPPED)
FAILURE_OUTCOMES = (REJECTED, TIMEOUT, HTTP_ERROR, STREAM_ERROR, EMPTY, INVALID)
NOT_JUDGED = (CUT_SHORT, DROPPED)  # neither a success nor a failure of the target: left out of the success rate

# (column, type, description). Types: str, int, float, bool. Order is the CSV column order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("request_id", "str", "unique id of the request (a UUID, also sent as the X-Request-ID header)"),
    ("worker", "str", "the load process that sent it: <hostname>-<pid>"),
    ("user_class", "str", "Locust user class name, e.g. StudentUser"),
    ("api", "str", "ollama-chat | ollama-generate | openai | gateway"),
    ("model", "str", "model name sent in the request"),
    ("stage", "int", "index of the shape stage in which the request started (0-based; -1 = no shape, or started after the last stage ended)"),
    ("stage_users", "int", "target user count of that stage"),
    ("settle", "bool", "started inside the stage's settle window: left out of that stage's numbers"),
    ("start_time", "float", "unix time (s) when the request was sent"),
    ("outcome", "str", "ok | rejected | timeout | http_error | stream_error | empty | invalid | cut_short | dropped "
     "(an open-loop arrival not sent: --max-in-flight reached; start_time = its arrival time)"),
    ("http_status", "int", "HTTP status of the response; 0 when none arrived"),
    ("ttft_ms", "float", "request sent -> first chunk with non-empty content"),
    ("e2e_ms", "float", "request sent -> last byte of the reply (or the failure)"),
    ("itl_ms", "float", "mean gap between content chunks after the first"),
    ("output_tokens", "int", "eval_count / usage.completion_tokens; else content chunks (see tokens_estimated)"),
    ("tokens_estimated", "bool", "output_tokens counted from content chunks, not reported by the server"),
    ("prompt_tokens", "int", "prompt_eval_count / usage.prompt_tokens"),
    ("tokens_per_s", "float", "decode rate of this request: (output_tokens - 1) / (e2e - ttft)"),
    ("load_ms", "float", "server's load_duration: arrival until a runner was handed over (cold load, scheduler queue)"),
    ("prompt_eval_ms", "float", "server's prompt_eval_duration (prefill of new prompt tokens)"),
    ("eval_ms", "float", "server's eval_duration (generation)"),
    ("server_total_ms", "float", "server's total_duration"),
    ("queue_wait_ms", "float", "total - load - prompt_eval - eval: the wait for a NUM_PARALLEL slot"),
    ("done_reason", "str", "stop | length | ... as the server said"),
    ("error", "str", "what went wrong, one line (empty when ok)"),
    ("connect_ms", "float", "time to open a new connection before the request was written (empty: a kept-alive connection was reused)"),
    ("token_arrivals", "str", "when the reply's content arrived, bucketed: 'W:c0,c1,...' = c_i content chunks arrived in "
     "[i*W, (i+1)*W) ms after start_time (W >= TOKEN_BUCKET_MS, chosen per record so it has at most TOKEN_BUCKETS_MAX buckets)"),
    ("bad_counts", "str", "token counts the server reported that were not non-negative integers, e.g. "
     "'eval_count=\"n/a\"': ignored (output_tokens then estimated); empty: none"),
    ("send_lag_ms", "float", "open-loop arrivals (--shape rate, --rate): start_time minus the request's scheduled "
     "arrival time — how late the load generator sent it (its own lateness, a new connection and the user's start "
     "included); empty for a request of a closed-loop user"),
    # The columns of the seed script (run.py), kept so its users' notebooks keep working.
    ("latency", "float", "seed column: e2e latency in seconds"),
    ("status", "int", "seed column: HTTP status"),
    ("tokens", "int", "seed column: output tokens"),
    ("total_duration", "float", "seed column: server's total_duration in seconds"),
)

TOKEN_BUCKET_MS = 100  # the finest bucket of token_arrivals
TOKEN_BUCKETS_MAX = 256  # a longer reply gets wider buckets, so a record stays small

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)
COLUMN_TYPES: dict[str, str] = {name: kind for name, kind, _ in COLUMNS}
COLUMN_DOCS: dict[str, str] = {name: doc for name, _, doc in COLUMNS}

# stages.csv, written by the master: one row per shape stage.
STAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("stage", "int", "0-based stage index"),
    ("users", "int", "target user count"),
    ("start_time", "float", "unix time (s) the stage began"),
    ("end_time", "float", "unix time (s) the stage ended (empty while running)"),
    ("settle_s", "float", "settle window at the start of the stage, seconds"),
    ("kind", "str", "step | burst | ramp | hold | rate"),
    ("users_mean", "float", "time-weighted mean of the users running during the stage (the master's samples)"),
    ("users_max", "int", "most users running at once during the stage"),
    ("reached_s", "float", "seconds from the stage's start until its target user count was running (empty: never reached)"),
    ("rate", "float", "offered open-loop arrival rate of a rate stage, requests/s across all load processes "
     "(--shape rate; empty for a stage of users)"),
)
STAGE_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in STAGE_COLUMNS)

# generator.csv, written by the master: one row per second per load process (the generator's own health).
GENERATOR_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("worker", "str", "the load process: <hostname>-<pid> (the records' worker column)"),
    ("time", "float", "unix time (s) the sample closed, on the master's clock (corrected by the worker's offset)"),
    ("interval_s", "float", "wall seconds the sample covers (about 1)"),
    ("cpu", "float", "the process's CPU time / wall time over the interval (1.0 = one full core)"),
    ("lag_p99_ms", "float", "p99 lateness of a 100 ms timer in the process's gevent hub over the interval"),
    ("lag_max_ms", "float", "the latest wake-up of that timer over the interval"),
    ("connections", "int", "open sockets of the process: its users' connections and a few of Locust's own (empty: could not be read)"),
    ("users", "int", "users running in the process"),
)
GENERATOR_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in GENERATOR_COLUMNS)

# The run folder's file names (docs/run-folder.md): written by the load side, read by the reports.
REQUESTS_FILE = "requests.csv"
STAGES_FILE = "stages.csv"
GENERATOR_FILE = "generator.csv"
RUN_FILE = "run.json"
RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
LOCUST_CSV_PREFIX = "locust"  # Locust's --csv: locust_stats.csv, locust_stats_history.csv, ...
LOCUST_HTML_FILE = "locust_report.html"
LOCUST_LOG_FILE = "locust.log"
WORKER_LOG_FILE = "worker-{index}.log"
# Written by `ollama-locust probe` / `predict` (docs/predict.md).
PROBE_FILE = "probe.json"
WHAT_IF_MD = "what-if.md"
WHAT_IF_JSON = "what-if.json"
BAND_JSON = "band.json"
PREDICTION_CHECK_MD = "predicted-beside-measured.md"  # `step --predict`: the two side by side
RUN_PREDICTED = "predicted"  # run.json key: true when the run folder was predicted in virtual time, not measured

# Exit codes of every command (`ollama-locust step|report|compare|sim`, and the locust processes the
# plugin runs): 0 the run completed (thresholds are findings, not errors).
EXIT_BAD_INPUT = 2  # bad input or an unusable target: one line on stderr
EXIT_SLO_FAILED = 3  # `step --fail-on-slo` and a step failed the thresholds
EXIT_WRITE_FAILED = 4  # the run folder could not be written (a full disk): the run stopped, the report says what is missing
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: the report of what ran is still written
