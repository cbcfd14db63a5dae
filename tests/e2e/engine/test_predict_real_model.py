"""The real-engine accuracy gate of issue 15: probe llama.cpp's ``llama-server`` serving Gemma 3 270M (the
real model, ``gemma_server``), predict the step test, run it, and compare per step p50, TTFT p50 and
Tokens/s (total). The issue's goal is 25 %, and it is not met in every run: on the current model (runs 13-16,
docs/predict.md) 2 of 5 runs were within 25 % on every figure and all within 35 %; the misses are TTFT p50 at
2 or 4 users. The test asserts the verdict, the prompt cache the probe must see, and a 60 % sanity bound,
and prints every run's figures (``-s``); the 25 % goal is open.

Through the OpenAI-compatible API, so the probe works from client timings alone (its ``estimates`` say
so). ``--parallel 1`` (requests queue) and ``--parallel 4`` (continuous batching). StudentUser with short
answers (``--num-predict 16``) so each step holds enough requests on one engine thread, and 0-1 s of think
time: with less than a prefill's worth (0-0.2 s), a user that arrives during another's prefill stays one
decode step behind it for the rest of the step, and whether a step starts so is chance: two measured runs
gave TTFT p50 0.60 and 1.15 s at 4 users.
"""

from __future__ import annotations

import pytest

from real_model import ALIAS
from tests.e2e.predict import gate

GATED = (("p50_ms", "p50"), ("ttft_p50_ms", "TTFT p50"), ("tokens_per_s_total", "Tokens/s (total)"))
GOAL = 0.25  # the figure, not yet met in every run (docs/predict.md)
TOLERANCE = 0.60  # a sanity bound: what held in every run of the current model (worst: 40 %)
LOAD = ("--think-time", "0,1", "--user-class", "StudentUser", "--num-predict", "16")


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("parallel", [1, 4])
def test_prediction_of_a_real_engine(gemma_server, tmp_path, parallel):
    server = gemma_server(parallel)
    result = gate.compare_on(server.url, str(tmp_path), load=LOAD, slo_p95_ms=3000, user_class="StudentUser",
                             users="1,2,4", step_time="25s", model=ALIAS, api="openai", probe_max_time="60s")
    result["setting"] = f"llama-server --parallel {parallel}, Gemma 3 270M, StudentUser, --num-predict 16"
    print("\n" + gate.table(result))
    print("estimates:", "; ".join(result["estimates"]))
    # llama-server keeps every conversation's prompt, not only its slots' (--cache-ram, 8 GiB by default);
    # the probe sees it after a round with more streams than slots (at --parallel 4: the 8-stream round)
    assert result["server"]["prompt_cache"], result["server"]
    # (None: not measured, when no round ran more streams than the slots; at --parallel 1 every round does)
    assert result["prompt_cache"].get("beyond_slots") in ((True,) if parallel == 1 else (True, None)), result["prompt_cache"]
    # with a plain chat template llama-server's cache ends where the previous reply began: the probe's follow-up
    # pair (a 64-token answer, then its follow-up: ~450 ms against ~100 ms for a kept reply) sees it computed again
    assert result["server"]["reply_reprefilled"] is True, result["server"]
    assert any("client timings" in e for e in result["estimates"])  # no server durations through the OpenAI API
    assert result["mode"][0] == result["mode"][1], gate.table(result)  # queue or share: the same verdict
    off = [(row["users"], key, None if e is None else round(e * 100)) for row in result["rows"] for key, _ in GATED
           for e in [row[key][2]] if e is None or abs(e) > TOLERANCE]
    assert not off, f"figures more than {TOLERANCE:.0%} off (users, figure, error %): {off}\n" + gate.table(result)
