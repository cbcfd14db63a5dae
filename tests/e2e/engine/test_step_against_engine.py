"""Step tests against the real engine: ``ollama-locust step --api openai`` against llama.cpp's server
(directly, and through the repository's nginx gateway). Issue 8, deliverables 3 and 4.

llama-cpp-python's server validates ``X-Request-ID`` as a UUID (starlette-context's ``RequestIdPlugin``)
and answers 400 to any other value: the load tool's request ids are UUIDs for that reason, and
``test_engine_rejects_non_uuid_request_id`` pins the server's behaviour down.
"""

from __future__ import annotations

import json
import os
import statistics
import uuid

import httpx

from tests.e2e.deploy.conftest import nginx_gateway  # noqa: F401  (makes the fixture available)
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, read_csv, run

NUM_PREDICT = 32


def _step(tmp_path, host: str, model: str, users: str, name: str):
    out = tmp_path / "runs"
    result = run(ollama_locust("step", "--host", host, "--api", "openai", "--model", model,
                               "--users", users, "--step-time", "4s", "--think-time", "0",
                               "--num-predict", str(NUM_PREDICT), "--drain-timeout", "10",
                               "--out", str(out)),
                 tmp_path, timeout=90, name=name)
    assert result.code == 0, result.text[-3000:]
    assert_no_traceback(result)
    folder = only_run_dir(out)
    return folder, read_csv(os.path.join(folder, "requests.csv"))


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r["outcome"] == "ok"]


def _assert_ok_records(ok: list[dict], strict: bool = True) -> None:
    assert ok
    for r in ok:
        assert int(r["output_tokens"]) == NUM_PREDICT, r
        # The server sends no usage in the stream: tokens are counted from content chunks.
        assert r["tokens_estimated"] == "True", r
        ttft, e2e = float(r["ttft_ms"]), float(r["e2e_ms"])
        # Through the gateway a whole fast reply (32 tokens in ~20 ms) can arrive in one read: TTFT == E2E.
        assert 0 < ttft < e2e if strict else 0 < ttft <= e2e, r


def _ttft_p50(ok: list[dict], users: int) -> float:
    values = [float(r["ttft_ms"]) for r in ok if r["stage_users"] == str(users) and r["settle"] == "False"]
    assert values, f"no ok request at {users} users"
    return statistics.median(values)


def test_engine_rejects_non_uuid_request_id(llama_server, llama_model):
    """The cause of the blocker above, at the HTTP level (the preflight sends no X-Request-ID)."""
    body = {"model": llama_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}

    def post(request_id: str) -> int:
        return httpx.post(llama_server + "/v1/chat/completions", json=body, timeout=30, trust_env=False,
                          headers={"X-Request-ID": request_id}).status_code

    assert post("vm-123-1") == 400
    assert post(str(uuid.uuid4())) == 200


def test_step_openai_against_engine(llama_server, llama_model, tmp_path):
    folder, records = _step(tmp_path, llama_server, llama_model, "1,2,4", "step-engine")
    for name in ("requests.csv", "stages.csv", "run.json", "results.md"):
        assert os.path.isfile(os.path.join(folder, name)), name
    stages = read_csv(os.path.join(folder, "stages.csv"))
    assert [s["users"] for s in stages] == ["1", "2", "4"]

    ok = _ok(records)
    _assert_ok_records(ok, strict=False)  # a fast reply can arrive in one read even directly
    assert len(ok) >= 0.95 * len([r for r in records if r["outcome"] != "cut_short"])
    # One request at a time: at 4 users a request's first token waits for the others ahead of it.
    ttft_1, ttft_4 = _ttft_p50(ok, 1), _ttft_p50(ok, 4)
    assert ttft_4 > 4 * ttft_1, (ttft_1, ttft_4)

    report = open(os.path.join(folder, "results.md"), encoding="utf-8").read()
    assert "n/a: the OpenAI-compatible API reports no server durations" in report
    assert "**Degradation per step:**" in report
    assert "- 4 users: p95" in report
    # The report recognises it: llama-cpp-python's server answers one request at a time.
    assert "**Requests wait for each other:** the server answers one at a time. At 4 users" in report, report
    conclusion = json.load(open(os.path.join(folder, "results.json"), encoding="utf-8"))["conclusion"]
    assert conclusion["concurrency_mode"] == "serialised"
    assert conclusion["concurrency"]["serialised"]["requests_ahead"] > 2.5  # 3 others, measured from the records


def test_step_openai_through_gateway(llama_server, llama_model, nginx_gateway, tmp_path):  # noqa: F811
    gateway = nginx_gateway(llama_server)
    folder, records = _step(tmp_path, gateway.url, llama_model, "1,2", "step-gateway")
    stages = read_csv(os.path.join(folder, "stages.csv"))
    assert [s["users"] for s in stages] == ["1", "2"]

    ok = _ok(records)
    _assert_ok_records(ok, strict=False)
    assert len(ok) >= 0.95 * len([r for r in records if r["outcome"] != "cut_short"])
    # Streamed through the gateway (no buffering): at 1 user the first token comes well before the end.
    ttft = statistics.median(float(r["ttft_ms"]) for r in ok if r["stage_users"] == "1")
    e2e = statistics.median(float(r["e2e_ms"]) for r in ok if r["stage_users"] == "1")
    assert ttft < 0.6 * e2e, (ttft, e2e)
