"""The probe's fit from its measurements (pure functions), the user model it shares, and sim --profile-file."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from ollama_locust.scenarios.fit import (fit_batch_curve, fit_concurrency, prompt_tokens, reply_reprefilled,
                                         round_facts, token_model)
from ollama_locust.scenarios.probe import show_facts
from ollama_locust.scenarios.prompts import load_prompts
from ollama_locust.scenarios.user_model import StudentChat, think_seconds
from ollama_locust.simulator.config import ConfigError, config_from_args
from ollama_locust.simulator.profiles import PROBE_FORMAT, PROFILES, ProfileFileError, profile_from_probe, step_factor


def stream(start: float, ttft_ms: float, e2e_ms: float, tokens: int = 32, eval_ms: float | None = None) -> dict:
    return {"outcome": "ok", "start_time": start, "ttft_ms": ttft_ms, "e2e_ms": e2e_ms, "output_tokens": tokens,
            "eval_ms": eval_ms, "tokens_per_s": (tokens - 1) * 1000 / (e2e_ms - ttft_ms)}


def test_queued_streams_are_not_counted_as_slots():
    # one slot: the second starts streaming after the first ended
    one = round_facts(2, [stream(0.0, 20, 340, eval_ms=320), stream(0.0, 350, 670, eval_ms=320)])
    assert one["started_together"] == 1 and one["per_stream_tps"] == pytest.approx(100)
    # two slots sharing: both stream at once, slower
    two = round_facts(2, [stream(0.0, 25, 440, eval_ms=416), stream(0.001, 25, 440, eval_ms=416)])
    assert two["started_together"] == 2
    slots, beta = fit_concurrency(100.0, [one, two])
    assert slots == 2 and beta == pytest.approx(100 / (32 / 0.416) - 1)


def test_beta_from_several_rounds_by_least_squares():
    rounds = [{"streams": 2, "started_together": 2, "per_stream_tps": 100 / 1.3},
              {"streams": 4, "started_together": 4, "per_stream_tps": 100 / 1.9}]
    assert fit_concurrency(100.0, rounds) == (4, pytest.approx(0.3))
    assert fit_concurrency(100.0, [{"streams": 2, "started_together": 1, "per_stream_tps": 100}]) == (1, None)
    assert fit_concurrency(100.0, []) == (None, None)


def test_the_batching_curve_is_what_the_rounds_measured():
    # llama-server on one CPU thread (docs/predict.md): a 2-stream step costs relatively more than a line allows
    rounds = [{"streams": 2, "started_together": 2, "per_stream_tps": 100 / 1.8},
              {"streams": 4, "started_together": 4, "per_stream_tps": 100 / 2.8},
              {"streams": 8, "started_together": 4, "per_stream_tps": 100 / 2.4},
              {"streams": 2, "started_together": 1, "per_stream_tps": 100.0}]  # queued: not a shared step
    assert fit_batch_curve(100.0, rounds) == [[2, pytest.approx(1.8)], [4, pytest.approx(2.6)]]  # 4: median
    # a step with more busy slots never takes less time than one with fewer, nor than one stream's
    assert fit_batch_curve(100.0, [{"started_together": 2, "per_stream_tps": 110.0},
                                   {"started_together": 4, "per_stream_tps": 60.0},
                                   {"started_together": 8, "per_stream_tps": 70.0}]) == [
        [2, 1.0], [4, pytest.approx(1.6667, abs=1e-4)], [8, pytest.approx(1.6667, abs=1e-4)]]
    assert fit_batch_curve(100.0, []) == []


def test_step_factor_follows_the_curve_and_goes_on_past_it():
    line = replace(PROFILES["gpu-llama3-8b"], beta=0.3)
    assert [step_factor(line, n) for n in (1, 2, 5)] == pytest.approx([1.0, 1.3, 2.2])
    curved = replace(line, batch_curve=((2, 1.8), (4, 2.6)))
    assert [step_factor(curved, n) for n in (1, 2, 3, 4, 6)] == pytest.approx([1.0, 1.8, 2.2, 2.6, 3.4])
    one_point = replace(line, batch_curve=((2, 1.5),))
    assert step_factor(one_point, 4) == pytest.approx(2.5)
    data = {"format": PROBE_FORMAT, "server": {"decode_tps": 20.0, "prefill_tps": 150.0, "beta": 0.5, "load_time": 0,
                                               "num_parallel": 4, "batch_curve": [[2, 1.8], [4, 2.6]]}}
    assert profile_from_probe(data)[0].batch_curve == ((2, 1.8), (4, 2.6))
    for bad in ([[1, 1.5]], [[2, 0.5]], [[4, 2.0], [2, 1.5]], [[2, "x"]], {"2": 1.5}):
        with pytest.raises(ProfileFileError, match="batch_curve"):
            profile_from_probe({**data, "server": {**data["server"], "batch_curve": bad}})


def test_kv_cache_per_slot_from_the_architecture():
    body = {"details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": "llama", "llama.block_count": 28, "llama.attention.head_count": 24,
                           "llama.attention.head_count_kv": 8, "llama.embedding_length": 3072,
                           "llama.context_length": 131072}}
    facts = show_facts(body)
    assert facts["kv_cache_bytes_per_slot"] == 28 * 8 * (128 + 128) * 4096 * 2  # 448 MiB at f16
    assert facts["quantization_level"] == "Q4_K_M" and facts["context_length"] == 131072
    assert show_facts({"details": {}, "model_info": {}})["kv_cache_bytes_per_slot"] is None


def test_student_chat_grows_with_the_replies_and_drops_unanswered_questions():
    chat = StudentChat(load_prompts(None), random.Random(1))
    first = list(chat.ask())
    assert len(first) == 1 and first[0]["role"] == "user"
    chat.answered(True, "an answer")
    assert [m["role"] for m in chat.ask()] == ["user", "assistant", "user"]
    chat.answered(False, "")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]


def test_think_time_and_back_off():
    rng = random.Random(0)
    assert 2.0 <= think_seconds(rng, 2.0, 3.0) <= 3.0
    assert think_seconds(rng, 0.0, 0.0, failures=1) == 0.25
    assert think_seconds(rng, 0.0, 0.0, failures=5) == 2.0
    assert think_seconds(rng, 0.0, 0.0, failures=1, retry_after=7.0) == 7.0


def test_sim_serves_the_fitted_server(tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"format": PROBE_FORMAT, "server": {"decode_tps": 33.0, "prefill_tps": 300.0, "beta": 0.5,
                                                                      "load_time": 1.5, "num_parallel": 3}}))
    cfg = config_from_args(["--profile-file", str(probe)])
    assert cfg.num_parallel == 3 and cfg.timing().decode_tps == 33.0 and cfg.timing().beta == 0.5
    assert config_from_args(["--profile-file", str(probe), "--num-parallel", "1"]).num_parallel == 1
    assert config_from_args(["--profile-file", str(probe), "--decode-tps", "10"]).timing().decode_tps == 10.0
    curved = tmp_path / "curved.json"
    curved.write_text(json.dumps({"format": PROBE_FORMAT, "server": {**json.loads(probe.read_text())["server"],
                                                                       "batch_curve": [[2, 1.8]]}}))
    assert config_from_args(["--profile-file", str(curved)]).timing().batch_curve == ((2, 1.8),)
    # --beta is the user's own line: it replaces the measured curve
    assert config_from_args(["--profile-file", str(curved), "--beta", "0.2"]).timing().batch_curve == ()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a probe file"):
        config_from_args(["--profile-file", str(bad)])


def test_the_token_model_separates_the_template_from_the_text():
    # a tokenizer with 1.5 tokens per counted word and 5 template tokens per message, at three prompt lengths
    lone = [{"counted_text_tokens": n, "counted_prompt_tokens": n + 10, "prompt_tokens": 1.5 * n + 5} for n in (8, 40, 300)]
    scale, template = token_model(lone)
    assert scale == pytest.approx(1.5) and template == pytest.approx(5.0)
    follow_up = [{"role": "user", "content": "one two three four"}, {"role": "assistant", "content": "w " * 16},
                 {"role": "user", "content": "why is that"}]
    # the replies the predictor writes are as many words as the server's tokens: not scaled
    assert prompt_tokens(follow_up, scale, template, exact_replies=True) == round(1.5 * 4 + 16 + 1.5 * 3 + 3 * 5)
    # one length only (or an older probe.json without counted text): the ratio, the counter's template scaled alike
    assert token_model(lone[:1]) == (pytest.approx(17 / 18), None)
    assert prompt_tokens(follow_up[:1], 2.0) == 2 * (4 + 10)


def test_a_follow_up_that_computes_the_reply_again_is_told_by_its_prefill():
    def pair(second_ms: float, reply: int = 64) -> dict:
        return {"measured": True, "first": {"prompt_tokens": 20, "output_tokens": reply},
                "second": {"prompt_tokens": 20 + reply + 15, "ttft_ms": second_ms}}

    prefill = lambda tokens: 0.03 + tokens / 250  # the client-side line: intercept + tokens / rate
    assert reply_reprefilled(pair(0.03e3 + 15 / 250 * 1e3 + 10), prefill, server_side=False) is False  # kept: ~90 ms
    assert reply_reprefilled(pair(0.03e3 + 79 / 250 * 1e3 - 20), prefill, server_side=False) is True  # again: ~346 ms
    assert reply_reprefilled(pair(50.0, reply=2), prefill, server_side=False) is None  # 8 ms apart: cannot tell
    assert reply_reprefilled({"measured": False}, prefill, server_side=False) is None
