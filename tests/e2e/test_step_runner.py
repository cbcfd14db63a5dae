"""`ollama-locust step` end to end: real simulator process, real locust master/workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.e2e.helpers import (
    LOAD,
    SIM_ARGS,
    assert_no_traceback,
    free_port,
    locust,
    ollama_locust,
    only_run_dir,
    read_csv,
    read_truth,
    run,
)



def check_folder(run_dir: str, truth_path, users: list[int]) -> list[dict]:
    stages = read_csv(os.path.join(run_dir, "stages.csv"))
    assert [int(s["users"]) for s in stages] == users
    records = read_csv(os.path.join(run_dir, "requests.csv"))
    truth = [t for t in read_truth(truth_path) if t.get("client_request_id")]
    assert len(records) == len(truth) > 0
    ids = [r["request_id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {t["client_request_id"] for t in truth}
    bounds = [(float(s["start_time"]), float(s["end_time"])) for s in stages]
    for record in records:
        start = float(record["start_time"])
        index = int(record["stage"])
        if index == -1:  # the drain: started after the last stage's end, in no step
            assert start >= bounds[-1][1]
            continue
        assert bounds[index][0] <= start
        if index + 1 < len(bounds):
            assert start < bounds[index + 1][0]
    info = json.load(open(os.path.join(run_dir, "run.json")))
    assert info["interrupted"] is False
    return records


def test_three_steps_stage_timeline_and_settle(tmp_path, sim_process):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process(*SIM_ARGS, "--truth-log", str(truth))
    result = run(ollama_locust("step", "--host", sim.url, "--users", "1,2,4", "--step-time", "4s", "--settle", "1s",
                               "--out", str(tmp_path / "runs"), "--label", "three", *LOAD), tmp_path, timeout=90)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    records = check_folder(run_dir, truth, [1, 2, 4])
    stages = read_csv(os.path.join(run_dir, "stages.csv"))
    for stage in stages:
        assert 3.0 <= float(stage["end_time"]) - float(stage["start_time"]) <= 5.5
    starts = {int(s["stage"]): float(s["start_time"]) for s in stages}
    for record in records:
        in_settle = float(record["start_time"]) < starts[int(record["stage"])] + 1.0
        assert (record["settle"] == "True") == in_settle
    assert any(r["settle"] == "True" for r in records) and any(r["settle"] == "False" for r in records)
    assert "| Concurrent users" in result.out  # the results table is printed
    assert os.path.exists(os.path.join(run_dir, "results.md"))
    assert os.path.exists(os.path.join(run_dir, "locust_stats.csv"))
    assert "[ollama-locust] step" in result.out  # live progress was shown


def test_local_workers_give_the_same_folder(tmp_path, sim_process):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process(*SIM_ARGS, "--truth-log", str(truth))
    result = run(ollama_locust("step", "--host", sim.url, "--users", "2,4", "--step-time", "4s", "--workers", "2",
                               "--out", str(tmp_path / "runs"), *LOAD), tmp_path, timeout=90)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    records = check_folder(run_dir, truth, [2, 4])
    assert len({r["worker"] for r in records}) == 2
    assert json.load(open(os.path.join(run_dir, "run.json")))["workers"] == 2


def test_master_and_hand_started_workers(tmp_path, sim_process):
    """The way the README says for several machines: only host and port are shared."""
    truth = tmp_path / "truth.jsonl"
    sim = sim_process(*SIM_ARGS, "--truth-log", str(truth))
    port = free_port()
    run_dir = tmp_path / "run"
    master_dir, worker_dirs = tmp_path / "master", [tmp_path / "w1", tmp_path / "w2"]
    for folder in (master_dir, *worker_dirs):
        folder.mkdir()
    workers = [
        subprocess.Popen(locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                         cwd=folder, stdout=open(folder / "out", "w"), stderr=subprocess.STDOUT)
        for folder in worker_dirs
    ]
    try:
        result = run(locust("--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                            "--expect-workers", "2", "--host", sim.url, "--shape", "step", "--steps", "2,4",
                            "--step-time", "4s", "--run-dir", str(run_dir), *LOAD),
                     master_dir, timeout=90)
    finally:
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert_no_traceback(result)
    assert result.code in (0, 1), result.text[-3000:]
    check_folder(str(run_dir), truth, [2, 4])


def test_stop_on_failure_stops_at_the_first_failing_step(tmp_path, sim_process):
    sim = sim_process("--profile", "instant", "--decode-tps", "20", "--num-parallel", "1")
    result = run(ollama_locust("step", "--host", sim.url, "--users", "1,4,8", "--step-time", "4s", "--stop-on-failure",
                               "--slo-p95", "1500", "--out", str(tmp_path / "runs"), *LOAD), tmp_path, timeout=90)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    stages = read_csv(os.path.join(run_dir, "stages.csv"))
    assert [int(s["users"]) for s in stages] == [1, 4]
    info = json.load(open(os.path.join(run_dir, "run.json")))
    assert info["stopped_on_failure"]["stage"] == 1
    assert "stopped" in open(os.path.join(run_dir, "results.md")).read().lower()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--host", "http://127.0.0.1:{dead}"], "cannot reach http://127.0.0.1:{dead} (connection refused)"),
        (["--host", "{sim}", "--model", "nosuchmodel"], "model 'nosuchmodel' not found at {sim}; available: "),
        (["--host", "{sim}", "--users", "0,a"], "user counts must be whole numbers"),
        (["--host", "{sim}", "--step-time", "soon"], "--step-time must be a duration"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, sim_process, args, expected):
    sim = sim_process("--profile", "instant")
    values = {"dead": free_port(), "sim": sim.url}
    args = [a.format(**values) for a in args]
    result = run(ollama_locust("step", *args, "--out", str(tmp_path / "runs")), tmp_path, timeout=60)
    assert result.code == 2
    assert_no_traceback(result)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected.format(**values) in lines[0], result.err


def test_plain_locust_headless_writes_the_same_folder(tmp_path, sim_process):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process(*SIM_ARGS, "--truth-log", str(truth))
    run_dir = tmp_path / "plain"
    result = run(locust("--headless", "--host", sim.url, "--shape", "step", "--steps", "1,2", "--step-time", "3s",
                        "--run-dir", str(run_dir), *LOAD), tmp_path, timeout=60)
    assert_no_traceback(result)
    assert result.code in (0, 1), result.text[-3000:]
    check_folder(str(run_dir), truth, [1, 2])


def test_ctrl_c_cuts_short_and_still_reports(tmp_path, sim_process):
    sim = sim_process("--profile", "instant", "--decode-tps", "20", "--num-parallel", "2")
    proc = subprocess.Popen(ollama_locust("step", "--host", sim.url, "--users", "2,4", "--step-time", "30s",
                                          "--out", str(tmp_path / "runs"), "--think-time", "0", "--num-predict", "200"),
                            cwd=tmp_path, stdout=open(tmp_path / "out", "w"), stderr=open(tmp_path / "err", "w"))
    time.sleep(8)
    proc.send_signal(2)
    code = proc.wait(60)
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert "Traceback" not in out + err
    assert code == 130, out + err
    run_dir = only_run_dir(tmp_path / "runs")
    records = read_csv(os.path.join(run_dir, "requests.csv"))
    assert any(r["outcome"] == "cut_short" for r in records)
    assert json.load(open(os.path.join(run_dir, "run.json")))["interrupted"] is True
    assert os.path.exists(os.path.join(run_dir, "results.md"))


def test_locust_processes_2_records_every_request_once(tmp_path, sim_process):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process(*SIM_ARGS, "--truth-log", str(truth))
    run_dir = tmp_path / "forked"
    result = run(locust("--headless", "--processes", "2", "--host", sim.url, "--shape", "step", "--steps", "2,4",
                        "--step-time", "4s", "--run-dir", str(run_dir), *LOAD), tmp_path, timeout=90)
    assert_no_traceback(result)
    assert result.code in (0, 1), result.text[-3000:]
    records = check_folder(str(run_dir), truth, [2, 4])
    assert len({r["worker"] for r in records}) == 2


def test_compare_two_real_runs_shows_the_num_parallel_gain(tmp_path, sim_process):
    """NUM_PARALLEL 1 vs 4 on the same paced simulator profile: total throughput at 4 users grows."""
    folders = []
    for parallel in ("1", "4"):
        sim = sim_process("--profile", "instant", "--decode-tps", "50", "--beta", "0.3", "--num-parallel", parallel)
        out = tmp_path / f"runs-{parallel}"
        result = run(ollama_locust("step", "--host", sim.url, "--users", "1,4", "--step-time", "5s", "--label",
                                   f"parallel-{parallel}", "--out", str(out), *LOAD), tmp_path, timeout=90,
                     name=f"step-{parallel}")
        assert result.code == 0, result.text[-3000:]
        folders.append(only_run_dir(out))
    result = run(ollama_locust("compare", *folders), tmp_path, timeout=60, name="compare")
    assert result.code == 0, result.text
    assert "parallel-1" in result.out and "parallel-4" in result.out
    data = [json.load(open(os.path.join(folder, "results.json"))) for folder in folders]
    at_4 = [next(s for s in d["steps"] if s["users"] == 4) for d in data]
    assert at_4[1]["tokens_per_s_total"] > 1.5 * at_4[0]["tokens_per_s_total"]
    assert at_4[1]["p50_ms"] < at_4[0]["p50_ms"]
    # One slot: requests wait for each other; four slots with β = 0.3: they share the server (slower streams).
    assert [d["conclusion"]["concurrency_mode"] for d in data] == ["serialised", "shared"]
    assert "requests wait for each other (serialised) at 4 users" in result.out
    assert "requests share the server (shared) at 4 users" in result.out


def test_ctrl_c_on_plain_locust_headless(tmp_path, sim_process):
    sim = sim_process("--profile", "instant", "--decode-tps", "20", "--num-parallel", "2")
    run_dir = tmp_path / "plain"
    proc = subprocess.Popen(locust("--headless", "--host", sim.url, "--shape", "step", "--steps", "3", "--step-time", "30s",
                                   "--run-dir", str(run_dir), "--think-time", "0", "--num-predict", "200"),
                            cwd=tmp_path, stdout=open(tmp_path / "out", "w"), stderr=subprocess.STDOUT)
    time.sleep(6)
    proc.send_signal(2)
    code = proc.wait(60)
    out = (tmp_path / "out").read_text()
    assert "Traceback" not in out
    assert code == 130, out[-3000:]
    records = read_csv(run_dir / "requests.csv")
    assert any(r["outcome"] == "cut_short" for r in records)
    assert all(r["outcome"] in ("ok", "cut_short") for r in records)
    assert json.load(open(run_dir / "run.json"))["interrupted"] is True
