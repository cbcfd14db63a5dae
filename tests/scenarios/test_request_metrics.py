"""scenarios.request_metrics on synthetic timings (no network)."""

import pytest

from ollama_locust.scenarios import request_metrics


def test_ttft_e2e_itl():
    assert request_metrics.ttft_ms(10.0, 10.25) == pytest.approx(250.0)
    assert request_metrics.ttft_ms(10.0, None) is None
    assert request_metrics.e2e_ms(10.0, 11.5) == pytest.approx(1500.0)
    # content chunks at 0.25, 0.35, 0.45, 0.55 -> three gaps of 100 ms
    assert request_metrics.itl_ms(10.25, 10.55, 4) == pytest.approx(100.0)
    assert request_metrics.itl_ms(10.25, 10.25, 1) is None
    assert request_metrics.itl_ms(None, None, 0) is None


def test_output_tokens_reported_or_estimated():
    assert request_metrics.output_tokens(42, 40) == (42, False)
    assert request_metrics.output_tokens(None, 40) == (40, True)
    assert request_metrics.output_tokens(0, 0) == (0, False)


def test_tokens_per_s_excludes_first_token():
    # 11 tokens, ttft 200 ms, e2e 1200 ms -> 10 tokens in 1 s
    assert request_metrics.tokens_per_s(11, 1200.0, 200.0) == pytest.approx(10.0)
    assert request_metrics.tokens_per_s(1, 1200.0, 200.0) is None
    assert request_metrics.tokens_per_s(5, 200.0, 200.0) is None
    assert request_metrics.tokens_per_s(5, 1200.0, None) is None
    assert request_metrics.tokens_per_s(None, 1200.0, 200.0) is None


def test_server_split_and_queue_wait():
    final = {"done": True, "total_duration": 10_000_000_000, "load_duration": 2_000_000_000,
             "prompt_eval_duration": 500_000_000, "eval_duration": 4_000_000_000}
    split = request_metrics.server_split(final)
    assert split == {"load_ms": 2000.0, "prompt_eval_ms": 500.0, "eval_ms": 4000.0,
                     "server_total_ms": 10000.0, "queue_wait_ms": 3500.0}


def test_server_split_omitted_zero_fields_count_as_zero():
    # omitempty: prompt_eval_duration and load_duration 0 were left out by the server
    split = request_metrics.server_split({"done": True, "total_duration": 3_000_000, "eval_duration": 1_000_000})
    assert split["load_ms"] == 0.0 and split["prompt_eval_ms"] == 0.0
    assert split["queue_wait_ms"] == pytest.approx(2.0)


def test_server_split_unmeasured_without_final_chunk():
    assert set(request_metrics.server_split(None).values()) == {None}
    assert set(request_metrics.server_split({"done": True}).values()) == {None}  # e.g. a gateway that strips them
    split = request_metrics.server_split({"done": True, "eval_duration": 1_000_000})
    assert split["eval_ms"] == 1.0 and split["server_total_ms"] is None and split["queue_wait_ms"] is None


def test_queue_wait_never_negative():
    split = request_metrics.server_split({"total_duration": 999, "eval_duration": 1000})
    assert split["queue_wait_ms"] == 0.0


def test_every_metric_is_a_record_column():
    from ollama_locust import contract

    for metric in request_metrics.REQUEST_METRICS:
        assert metric.key in contract.COLUMN_NAMES
