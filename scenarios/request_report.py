"""Where a finished LLM request goes: Locust's own statistics and the project's request records.

A user calls :func:`report_request` once per LLM request, whatever happened. It

* fires Locust's ``request`` event once, with the true end-to-end time (a failure carries its outcome
  class in the message), so Locust's statistics, header RPS, charts, CSVs and HTML count each request
  once. TTFT is not a Locust request (it would double Aggregated and mix into the response-time chart):
  it lives in the record (``requests.csv``) and the web UI's LLM tab;
* completes the record (user class, worker, request id, the seed's columns) and hands it to the run's
  record sink (``scenarios.record_sink``), which ships it to the master or writes ``requests.csv``.

A request cut short by a stop fires no Locust event (it is neither a success nor a failure of the
target) but is still recorded, as ``cut_short``; so is an open-loop arrival the generator did not send
(``dropped``, ``scenarios.open_loop``).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import uuid

from ollama_locust import contract
from ollama_locust.scenarios import secrets

_sequence = itertools.count(1)
_bits_pid: int | None = None
_bits = 0
_tag_pid: int | None = None
_tag = ""


class LLMRequestFailure(Exception):
    """The exception handed to Locust for a failed LLM request: '<outcome>: <error>'."""


def worker_tag() -> str:
    """Identifies this load process in request ids and the ``worker`` column.

    Computed per process id: ``locust --processes N`` forks after the locustfile was imported.
    """
    global _tag_pid, _tag
    pid = os.getpid()
    if pid != _tag_pid:
        _tag_pid, _tag = pid, f"{socket.gethostname()}-{pid}"
    return _tag


def _process_bits() -> int:
    """64 random bits per process (refreshed after a fork), so ids from different workers never collide."""
    global _bits_pid, _bits
    if _bits_pid != os.getpid():
        _bits_pid, _bits = os.getpid(), random.SystemRandom().getrandbits(64)
    return _bits


def next_request_id() -> str:
    """A run-unique id, UUID-shaped (servers such as llama.cpp's reject any other ``X-Request-ID``);
    send it as the ``X-Request-ID`` header so the simulator's truth log can be matched."""
    return str(uuid.UUID(int=(_process_bits() << 64) | next(_sequence), version=4))


def complete(record: dict, user_class: str) -> dict:
    """Fill the columns every record has, from what the client measured."""
    if not record.get("request_id"):
        record["request_id"] = next_request_id()
    record["worker"] = worker_tag()
    record["user_class"] = user_class
    record.setdefault("stage", -1)
    record.setdefault("stage_users", 0)
    record.setdefault("settle", False)
    record["error"] = secrets.mask(record.get("error"))  # the one place an error text is stored
    e2e_ms = record.get("e2e_ms")
    total_ms = record.get("server_total_ms")
    record["latency"] = None if e2e_ms is None else e2e_ms / 1000.0
    record["status"] = record.get("http_status", 0)
    record["tokens"] = record.get("output_tokens")
    record["total_duration"] = None if total_ms is None else total_ms / 1000.0
    return record


def fire_locust_events(environment, record: dict, name: str, request_type: str = "POST") -> None:
    outcome = record.get("outcome")
    if outcome in contract.NOT_JUDGED:
        return
    exception = None
    if outcome != contract.OK:
        exception = LLMRequestFailure(f"{outcome}: {record.get('error') or 'HTTP ' + str(record.get('http_status', 0))}")
    events = environment.events.request
    events.fire(
        request_type=request_type,
        name=name,
        response_time=record.get("e2e_ms") or 0.0,
        response_length=record.get("output_tokens") or 0,
        response=None,
        context={"outcome": outcome},
        exception=exception,
        start_time=record.get("start_time"),
        url=name,
    )


def report_request(user, record: dict, name: str) -> dict:
    """Report one finished LLM request of ``user`` (a Locust User). Returns the completed record."""
    return report_record(user.environment, record, type(user).__name__, name)


def report_record(environment, record: dict, user_class: str, name: str) -> dict:
    """:func:`report_request` for a record with no user instance behind it (a dropped arrival)."""
    complete(record, user_class)
    fire_locust_events(environment, record, name)
    sink = getattr(environment, "llm_records", None)
    if sink is not None:
        sink.add(record)
    return record
