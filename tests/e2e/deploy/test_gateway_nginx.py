"""The repository's gateway/nginx.conf, for real: Debian's nginx on 127.0.0.1 in front of the simulator.

Streaming passes through unbuffered, the concurrency and rate limits answer 429 from nginx, and a step
test through the gateway records those 429s as `rejected` while TTFT stays well below E2E.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx

from tests.e2e.deploy.gateway import upstream_address

# 20 tokens/s: a 20-token reply takes ~1 s, its first token arrives within a few ms.
PACED = ["--profile", "instant", "--decode-tps", "20", "--num-parallel", "8"]


def stream_timings(url: str, num_predict: int = 20, path: str = "/api/generate") -> tuple[float, float, int, int]:
    """(time to the first NDJSON line, time to the last, lines, status) of one streaming request."""
    body = {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": True, "options": {"num_predict": num_predict}}
    start = time.perf_counter()
    first = None
    lines = 0
    with httpx.stream("POST", url + path, json=body, timeout=30) as reply:
        for line in reply.iter_lines():
            if not line.strip():
                continue
            lines += 1
            if first is None:
                first = time.perf_counter() - start
        status = reply.status_code
    return (first if first is not None else float("nan")), time.perf_counter() - start, lines, status


def test_upstream_address():
    assert upstream_address("http://127.0.0.1:8123/") == "127.0.0.1:8123"
    assert upstream_address("localhost:11434") == "localhost:11434"


def test_streaming_passes_through_unbuffered(sim_process, nginx_gateway):
    sim = sim_process(*PACED)
    gw = nginx_gateway(sim.url)
    assert httpx.get(gw.url + "/").text.startswith("Ollama is running")
    assert httpx.get(gw.url + "/api/tags").json()["models"]
    stream_timings(sim.url, 2)  # load the model once
    direct = min(stream_timings(sim.url)[0] for _ in range(2))
    first, total, lines, status = stream_timings(gw.url)
    assert status == 200 and lines >= 20
    assert total > 0.7  # the whole reply is paced ...
    assert first < 0.25 and first < direct + 0.15, (first, direct)  # ... and its first line is not held back
    assert first < total / 4
    assert gw.access_statuses("/api/generate") == [200]


def test_concurrency_limit_answers_429_from_nginx(sim_process, nginx_gateway):
    sim = sim_process(*PACED, "--truth-log", os.devnull)
    gw = nginx_gateway(sim.url, max_conn=2)
    stream_timings(gw.url, 1)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: stream_timings(gw.url), range(6)))
    statuses = sorted(status for *_, status in results)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    rejected = httpx.Client()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(stream_timings, gw.url) for _ in range(2)]
        time.sleep(0.3)
        reply = rejected.post(gw.url + "/api/chat", json={"model": "llama3.2", "messages": []})
        [f.result() for f in futures]
    assert reply.status_code == 429
    assert reply.json()["error"].startswith("too many requests")  # Ollama's error shape, from nginx
    assert "limiting connections" in gw.errors()
    # Reads are not limited: health checks and the preflight always pass.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(stream_timings, gw.url) for _ in range(2)]
        time.sleep(0.3)
        assert httpx.get(gw.url + "/api/tags").status_code == 200
        [f.result() for f in futures]


def test_rate_limit_answers_429_from_nginx(sim_process, nginx_gateway):
    sim = sim_process("--profile", "instant", "--num-parallel", "8")
    gw = nginx_gateway(sim.url, rate="1r/s", burst=2)
    body = {"model": "llama3.2", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    statuses = [httpx.post(gw.url + "/api/generate", json=body, timeout=10).status_code for _ in range(6)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429, 429], statuses
    assert "limiting requests" in gw.errors()
    assert any("limit_req=REJECTED" in line for line in gw.access_lines())


def read_csv(path):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_step(tmp_path, host: str, *extra: str) -> tuple[list[dict], str]:
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "ollama_locust", "step", "--host", host, "--users", "1,4", "--step-time", "4s",
               "--think-time", "0", "--num-predict", "20", "--drain-timeout", "5", "--no-report", "--out", str(out), *extra]
    with open(tmp_path / "step.out", "w") as stdout:
        proc = subprocess.run(command, cwd=tmp_path, stdout=stdout, stderr=subprocess.STDOUT, timeout=90)
    text = (tmp_path / "step.out").read_text()
    assert "Traceback" not in text, text[-3000:]
    assert proc.returncode == 0, text[-3000:]
    [run_dir] = [out / name for name in os.listdir(out)]
    return read_csv(run_dir / "requests.csv"), str(run_dir)


def check_records(records: list[dict], truth_path) -> None:
    rejected = [r for r in records if r["outcome"] == "rejected"]
    ok = [r for r in records if r["outcome"] == "ok"]
    assert rejected and all(r["http_status"] == "429" for r in rejected), {r["outcome"] for r in records}
    assert len(ok) >= 5
    # Streaming measured through the proxy: the first token long before the end of the reply.
    for record in ok:
        assert float(record["ttft_ms"]) < 0.3 * float(record["e2e_ms"]), record
    assert {r["outcome"] for r in records} <= {"ok", "rejected", "cut_short"}
    # nginx answered the 429s itself: only the other requests reached the simulator.
    truth = [json.loads(line) for line in open(truth_path) if line.strip()]
    reached = {t["client_request_id"] for t in truth if t.get("client_request_id")}
    assert reached == {r["request_id"] for r in records if r["outcome"] != "rejected"}


def test_step_test_through_the_gateway_ollama_api(tmp_path, sim_process, nginx_gateway):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "50", "--num-parallel", "4", "--truth-log", str(truth))
    gw = nginx_gateway(sim.url, max_conn=2)
    records, _ = run_step(tmp_path, gw.url, "--api", "ollama-chat")
    check_records(records, truth)
    assert {r["api"] for r in records} == {"ollama-chat"}
    assert 429 in gw.access_statuses("/api/chat")


def test_step_test_through_the_gateway_gateway_api(tmp_path, sim_process, nginx_gateway):
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "50", "--num-parallel", "4", "--truth-log", str(truth))
    gw = nginx_gateway(sim.url, max_conn=2)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"model": "{{model}}", "prompt": "{{prompt}}", "stream": True,
                                   "options": {"num_predict": 20}}))
    records, _ = run_step(tmp_path, gw.url, "--api", "gateway", "--gateway-path", "/api/generate",
                          "--gateway-payload", str(payload))
    check_records(records, truth)
    assert {r["api"] for r in records} == {"gateway"}
    assert 429 in gw.access_statuses("/api/generate")
