"""Fault injection at about its rate, the truth log, and the simulator as a process (CLI contract)."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ollama_locust.simulator import SimStartError, start_process

N = 200


def stream_one(url, i):
    """One streaming /api/chat; returns (kind of ending, lines)."""
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": f"q{i}"}], "options": {"num_predict": 20}}
    try:
        with httpx.stream("POST", url + "/api/chat", json=body, timeout=30,
                          headers={"X-Request-ID": f"req-{i}"}) as r:
            if r.status_code != 200:
                return f"http{r.status_code}", []
            lines = list(r.iter_lines())
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return "dropped", []
    kinds = []
    for line in lines:
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            kinds.append("garbage")
            continue
        if "error" in obj:
            kinds.append("error_line")
    if "error_line" in kinds:
        return "error_line", lines
    if "garbage" in kinds:
        return "garbage", lines
    return ("ok" if json.loads(lines[-1]).get("done") else "cut"), lines


@pytest.mark.parametrize("flag,rate,ending", [
    ("fail_rate", 0.3, "http500"),
    ("drop_rate", 0.3, "dropped"),
    ("garbage_rate", 0.3, "garbage"),
    ("error_line_rate", 0.3, "error_line"),
])
def test_each_fault_at_about_its_rate(sim, tmp_path, flag, rate, ending):
    truth = tmp_path / "truth.jsonl"
    url = sim(profile="instant", num_parallel=8, truth_log=str(truth), **{flag: rate})
    endings = [stream_one(url, i)[0] for i in range(N)]
    share = endings.count(ending) / N
    assert abs(share - rate) < 0.1, (flag, share)
    assert set(endings) <= {"ok", ending}
    time.sleep(0.1)
    recs = [json.loads(x) for x in truth.read_text().splitlines()]
    assert len(recs) == N
    faulted = [r for r in recs if r["fault"]]
    assert len(faulted) == endings.count(ending)
    assert {r["fault"] for r in faulted} == {flag.removesuffix("_rate")}


def test_stall_pauses_a_stream_mid_way(sim, tmp_path):
    truth = tmp_path / "truth.jsonl"
    url = sim(profile="instant", num_parallel=4, stall=0.5, stall_rate=0.5, truth_log=str(truth))
    for i in range(20):
        assert stream_one(url, i)[0] == "ok"
    time.sleep(0.1)
    recs = [json.loads(x) for x in truth.read_text().splitlines()]
    stalled = [r for r in recs if r["fault"] == "stall"]
    assert 4 <= len(stalled) <= 16
    assert all(r["last_byte_sent"] - r["first_token_sent"] >= 0.5 for r in stalled)
    assert all(r["outcome"] == "ok" and r["output_tokens"] == 20 for r in recs)


def test_truth_log_fields(sim, tmp_path):
    truth = tmp_path / "truth.jsonl"
    url = sim(profile="instant", num_parallel=1, decode_tps=100, truth_log=str(truth))
    stream_one(url, 7)
    httpx.post(url + "/api/generate", json={"model": "nope", "prompt": "x"})
    time.sleep(0.1)
    ok, bad = [json.loads(x) for x in truth.read_text().splitlines()]
    assert set(ok) >= {"id", "client_request_id", "endpoint", "model", "stream", "arrival", "slot_start",
                       "first_token_sent", "last_byte_sent", "prompt_tokens", "output_tokens", "status", "fault",
                       "outcome"}
    assert ok["client_request_id"] == "req-7" and ok["endpoint"] == "/api/chat" and ok["stream"] is True
    assert ok["arrival"] <= ok["slot_start"] <= ok["first_token_sent"] <= ok["last_byte_sent"]
    assert ok["last_byte_sent"] - ok["first_token_sent"] == pytest.approx(0.19, abs=0.05)
    assert ok["output_tokens"] == 20 and ok["status"] == 200 and ok["outcome"] == "ok" and ok["fault"] is None
    assert bad["status"] == 404 and bad["outcome"] == "error" and bad["first_token_sent"] is None


def test_process_prints_the_listening_line_and_stops_cleanly_on_sigterm():
    with start_process(["--profile", "instant", "--num-parallel", "3"]) as sim:
        assert httpx.get(sim.url + "/api/version").status_code == 200
        assert sim.pid == sim.proc.pid
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(10) == 0


def test_sigint_and_listening_line_format():
    proc = subprocess.Popen([sys.executable, "-m", "ollama_locust.simulator", "--port", "0", "--profile", "pi5-llama3.2-3b",
                             "--max-queue", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().rstrip("\n")
        assert line.startswith("ollama-locust sim: listening on http://127.0.0.1:")
        assert line.endswith("(profile pi5-llama3.2-3b, num_parallel 1, max_queue 7)")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args,message", [
    (["--fail-rate", "2"], "ollama-locust sim: --fail-rate must be between 0 and 1, got 2"),
    (["--num-parallel", "x"], "ollama-locust sim: argument --num-parallel: must be an integer, got 'x'"),
    (["--profile", "gpu"], "ollama-locust sim: --profile: unknown profile 'gpu'; available:"),
])
def test_bad_flags_one_line_exit_2(args, message):
    r = subprocess.run([sys.executable, "-m", "ollama_locust.simulator", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1 and r.stdout == ""


def test_ollama_locust_sim_dispatches_here():
    r = subprocess.run([sys.executable, "-m", "ollama_locust", "sim", "--drop-rate", "-1"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "--drop-rate must be between 0 and 1" in r.stderr


def test_start_process_reports_a_dying_child():
    with pytest.raises(SimStartError, match="fail-rate"):
        with start_process(["--fail-rate", "5"], timeout=10):
            pass


def test_sim_process_fixture(sim_process):
    handle = sim_process("--profile", "instant", num_parallel=2)
    assert httpx.get(handle.url + "/api/tags").json()["models"][0]["name"] == "llama3.2:latest"
    assert os.path.exists(f"/proc/{handle.pid}")
