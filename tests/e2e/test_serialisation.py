"""`ollama-locust step --sim`: the report recognises a server that answers one request at a time.

The embedded simulator with one slot (OLLAMA_NUM_PARALLEL=1) makes requests wait for each other; with a
slot per user (and the `instant` profile's β = 0: no batch slowdown) nobody waits and nothing slows down.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, run

# 20 tokens at 100 tokens/s: ~0.2 s per request, so a 4 s step has ~20 requests even one at a time.
LOAD = ["--users", "1,4", "--step-time", "4s", "--think-time", "0", "--num-predict", "20", "--drain-timeout", "5"]


def _step(tmp_path, parallel: int) -> tuple[str, dict]:
    out = tmp_path / f"runs-{parallel}"
    result = run(ollama_locust("step", "--sim", "instant", "--sim-args", f"--num-parallel {parallel} --decode-tps 100",
                               "--out", str(out), "--label", f"np{parallel}", *LOAD),
                 tmp_path, timeout=90, name=f"step-{parallel}")
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    folder = only_run_dir(out)
    with open(os.path.join(folder, "results.md"), encoding="utf-8") as fh:
        report = fh.read()
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    return report, data


@pytest.mark.parametrize("parallel", [1, 4])
def test_sim_step_recognises_requests_waiting_for_each_other(tmp_path, parallel):
    report, data = _step(tmp_path, parallel)
    conclusion = data["conclusion"]
    assert data["run"]["simulator"]["num_parallel"] == parallel
    if parallel == 1:
        assert ("**Requests wait for each other:** the server answers one at a time. At 4 users a request waits "
                in report), report
        assert "Raising OLLAMA_NUM_PARALLEL (now 1; if memory allows) or fewer concurrent users shortens the wait." \
            in report
        assert conclusion["concurrency_mode"] == "serialised"
        verdict = conclusion["concurrency"]["serialised"]
        assert verdict["users"] == 4
        assert 2.5 < verdict["requests_ahead"] <= 3.0  # the three other users, measured from the records
        assert verdict["speed_ratio"] >= 0.7
        at_4 = next(s for s in data["steps"] if s["users"] == 4)
        assert at_4["client_split"]["ttft_share"] > 0.5  # the time split shows the wait
    else:
        assert "Requests wait for each other" not in report, report
        assert "Requests share the server" not in report
        assert conclusion["concurrency_mode"] is None
