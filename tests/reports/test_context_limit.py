"""The conclusion names answers that run to the context size (a base model with no --num-predict)."""

from __future__ import annotations

from ollama_locust.reports import write_report
from tests.reports.conftest import record, stage_rows

CONTEXT_400 = "HTTP 400: the request exceeds the available context size, try increasing it"


def _records(done_reason: str, errors: int) -> list[dict]:
    rows = [record(0, 1, 2000.0, ttft_ms=100.0, start=1_790_000_000.0 + 20 + i, done_reason=done_reason)
            for i in range(10)]
    rows += [record(0, 1, 5.0, outcome="http_error", status=400, error=CONTEXT_400, start=1_790_000_000.0 + 40 + i)
             for i in range(errors)]
    return rows


def _conclusion(make_run, records, num_predict: int) -> str:
    path = make_run(records, stage_rows([1]), {"api": "openai", "options": {"num_predict": num_predict}})
    return "\n".join(write_report(path, plots=False).data["conclusion"]["text"])


def test_answers_at_the_length_limit_without_num_predict(make_run):
    text = _conclusion(make_run, _records("length", 3), 0)
    assert ("**Answers hit the context size:** 10 of 10 answers ended at the length limit with no --num-predict; "
            "3 requests failed because the conversation exceeded the context size: set --num-predict or a stop."
            ) in text, text


def test_context_errors_with_num_predict_set(make_run):
    text = _conclusion(make_run, _records("length", 2), 64)  # ended at the asked-for limit: not a trap
    assert "2 requests failed because the conversation exceeded the context size: shorten the conversations" in text
    assert "answers ended at the length limit" not in text


def test_nothing_said_when_answers_stop(make_run):
    assert "context size" not in _conclusion(make_run, _records("stop", 0), 0)
    assert "context size" not in _conclusion(make_run, _records("length", 0), 64)
