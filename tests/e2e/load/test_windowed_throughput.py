"""The step table's Tokens/s (total) and Req/s against the simulator's truth log, at saturation (issue 13).

Real simulator processes, real `ollama-locust step` runs on 127.0.0.1. The referee: the tokens the simulator
wrote (``token_sent_ms``) and the requests it completed (``last_byte_sent``) inside each step's window.
"""

from __future__ import annotations

import os
import re

import pytest

from ollama_locust.simulator.profiles import PROFILES, throughput
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, report_vs_truth, run

GPU = ["--profile", "gpu-llama3-8b", "--load-time", "0"]
# The server's capacity: the profile's aggregate decode rate with every slot busy (100 and ~210 tokens/s).
CAPACITY = {slots: throughput(PROFILES["gpu-llama3-8b"], slots) for slots in (1, 4)}
TOLERANCE = 0.03


def _step_run(tmp_path, sim_process, name, sim_args, users, *load):
    truth = tmp_path / f"{name}.jsonl"
    sim = sim_process(*sim_args, "--truth-log", str(truth))
    out = tmp_path / name
    result = run(ollama_locust("step", "--host", sim.url, "--users", users, "--step-time", "15s",
                               "--out", str(out), "--label", name, "--drain-timeout", "10", *load),
                 tmp_path, timeout=240, name=name)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(out)
    return run_dir, report_vs_truth(run_dir, truth)


def _check(rows, capacity=None):
    for row in rows:
        assert row["truth_tokens_per_s"] > 0 and row["truth_req_per_s"] > 0, row
        assert row["tokens_per_s"] == pytest.approx(row["truth_tokens_per_s"], rel=TOLERANCE), row
        assert row["req_per_s"] == pytest.approx(row["truth_req_per_s"], rel=TOLERANCE), row
        if capacity is not None:
            assert row["tokens_per_s"] <= capacity * 1.01, row
        if row["users_held"] == row["users_held"]:  # recorded (stages.csv users_mean): never above the target
            assert 0 < row["users_held"] <= row["users"] + 1e-6, row


def _gain(text: str, label: str, users: int) -> float:
    header = next(line for line in text.splitlines() if line.startswith("| Concurrent users"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    row = next(line for line in text.splitlines() if line.startswith(f"| {users} |"))
    cell = [c.strip() for c in row.strip("|").split("|")][cols.index(label)]
    change = re.search(r"\(([+−-]\d+) %\)", cell)
    assert change, cell
    return float(change.group(1).replace("−", "-"))


def test_num_parallel_1_vs_4_windowed_throughput_and_compare(tmp_path, sim_process):
    one_dir, one = _step_run(tmp_path, sim_process, "np1", [*GPU, "--num-parallel", "1"], "1,4,8",
                             "--think-time", "0")
    _check(one, CAPACITY[1])
    four_dir, four = _step_run(tmp_path, sim_process, "np4", [*GPU, "--num-parallel", "4"], "4,8,16",
                               "--think-time", "0")
    _check(four, CAPACITY[4])
    print("np1", one)
    print("np4", four)
    result = run(ollama_locust("compare", one_dir, four_dir), tmp_path, timeout=60, name="compare")
    assert result.code == 0, result.text[-3000:]
    at8 = {r["users"]: r for r in one}[8], {r["users"]: r for r in four}[8]
    for label, key in (("Tokens/s (total) np4", "truth_tokens_per_s"), ("Req/s np4", "truth_req_per_s")):
        truth_gain = (at8[1][key] / at8[0][key] - 1) * 100
        shown = _gain(result.out, label, 8)
        print(label, "compare", shown, "truth", round(truth_gain, 1))
        assert abs(shown - truth_gain) <= 5.0, (label, shown, truth_gain)


def test_instant_profile_many_users(tmp_path, sim_process):
    run_dir, rows = _step_run(tmp_path, sim_process, "instant", ["--profile", "instant", "--num-parallel", "4"],
                              "64,256,1024", "--think-time", "5,10", "--num-predict", "20")
    print("instant", rows)
    _check(rows)
    with open(os.path.join(run_dir, "results.md"), encoding="utf-8") as fh:
        text = fh.read()
    assert "| Users held |" in text
