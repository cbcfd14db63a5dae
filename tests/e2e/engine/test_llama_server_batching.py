"""Real batching in the report: ``ollama-locust step`` against llama.cpp's C++ ``llama-server --parallel 2``,
next to the one-request-at-a-time Python server (llama-cpp-python's, the session fixture), same tiny model,
same one generation thread. Issue 8, item 6.

``llama-server`` is built once by ``scripts/build_llama_server.sh`` (``bash scripts/test.sh`` runs it and
exports ``OLLAMA_LOCUST_LLAMA_SERVER``; then a missing binary fails the test instead of skipping it).

What the records show (figures in docs/engine.md):

- with 2 slots, two users' replies are generated *at the same time*: their decode phases (first token →
  last token) overlap most of the time; with the Python server they never overlap;
- so TTFT stays where it was at 1 user instead of growing by a whole reply (a queue), and the decode rate
  of each request falls (the two streams share each step) — the Python server keeps its full rate, one
  request after the other;
- the total output rate is printed, not asserted: on this project's 2-core CI machine it grows only a
  little, and not in every run (a batch of two costs nearly two single steps on one CPU thread, and the
  per-token work outside the model — sampling, HTTP, the client — is per stream);
- at 4 users, never more than 2 replies are generated at once: the other requests wait for a slot.
"""

from __future__ import annotations

import json
import os

import pytest

from cpp_server import ENV_VAR, find_binary, start_cpp_server
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, read_csv, run

NUM_PREDICT = 32
STEP_TIME = "4s"
SETTLE = "1s"  # requests started in a step's first second are left out of its numbers (start-up transients)


@pytest.fixture(scope="module")
def cpp_server(tiny_model, tmp_path_factory):
    binary, why = find_binary()
    if binary is None:
        if os.environ.get(ENV_VAR):  # scripts/test.sh built it and said where: missing is a failure
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    log_path = tmp_path_factory.mktemp("cpp-server-log") / "llama-server.log"
    try:
        with start_cpp_server(tiny_model, log_path, binary=binary, parallel=2, threads=1) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def _step(tmp_path, host: str, model: str, users: str, name: str):
    out = tmp_path / name
    result = run(ollama_locust("step", "--host", host, "--api", "openai", "--model", model,
                               "--users", users, "--step-time", STEP_TIME, "--settle", SETTLE,
                               "--think-time", "0", "--num-predict", str(NUM_PREDICT),
                               "--drain-timeout", "10", "--out", str(out)),
                 tmp_path, timeout=90, name=name)
    assert result.code == 0, result.text[-3000:]
    assert_no_traceback(result)
    folder = only_run_dir(out)
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as handle:
        steps = {int(s["users"]): s for s in json.load(handle)["steps"]}
    return folder, read_csv(os.path.join(folder, "requests.csv")), steps


def _decoding_at_once(records: list[dict], users: int, at_least: int) -> float:
    """Share of the time some request of the step was generating (first token → last byte) during which
    at least ``at_least`` requests were generating at once."""
    events = []
    for r in records:
        if r["stage_users"] == str(users) and r["settle"] == "False" and r["outcome"] == "ok":
            start = float(r["start_time"])
            events += [(start + float(r["ttft_ms"]) / 1000, 1), (start + float(r["e2e_ms"]) / 1000, -1)]
    assert events, f"no ok request at {users} users"
    events.sort()
    active, last, busy, crowded = 0, events[0][0], 0.0, 0.0
    for t, change in events:
        if active >= 1:
            busy += t - last
        if active >= at_least:
            crowded += t - last
        active, last = active + change, t
    return crowded / busy if busy else 0.0


def _summary(steps: dict, records: list[dict]) -> dict:
    return {u: {"ttft": s["ttft_p50_ms"], "e2e": s["p50_ms"], "per_request": s["tokens_per_s_request"],
                "total": s["tokens_per_s_total"], "together": round(_decoding_at_once(records, u, 2), 2)}
            for u, s in steps.items()}


def test_step_shows_batching_of_llama_server(cpp_server, llama_server, llama_model, tmp_path):
    folder, records, steps = _step(tmp_path, cpp_server.url, cpp_server.model, "1,2,4", "step-cpp")
    assert sorted(steps) == [1, 2, 4]
    ok = [r for r in records if r["outcome"] == "ok"]
    assert len(ok) >= 0.95 * len([r for r in records if r["outcome"] != "cut_short"])
    for r in ok:
        # llama-server sends usage in the stream's last chunk: the count is the server's, not estimated
        assert int(r["output_tokens"]) == NUM_PREDICT and r["tokens_estimated"] == "False", r
    cpp = _summary(steps, records)

    _, py_records, py_steps = _step(tmp_path, llama_server, llama_model, "1,2", "step-python")
    py = _summary(py_steps, py_records)
    figures = f"llama-server --parallel 2: {cpp}; llama_cpp.server: {py}"
    print(figures)

    # Two replies generated at the same time (batching) vs strictly one after the other.
    assert cpp[2]["together"] >= 0.5, figures
    assert py[2]["together"] <= 0.05, figures
    # ... and never more than the 2 slots at once: at 4 users the others wait.
    assert _decoding_at_once(records, 4, 3) <= 0.05, figures
    assert steps[4]["ttft_p50_ms"] > 2 * steps[2]["ttft_p50_ms"], figures

    # TTFT: no queue with 2 slots; with one slot a new request waits for the reply being generated.
    assert cpp[2]["ttft"] < cpp[1]["ttft"] + 0.5 * cpp[1]["e2e"], figures
    assert py[2]["ttft"] > py[1]["ttft"] + 0.5 * py[1]["e2e"], figures
    # Each request's decode rate falls when two share the steps (0.38-0.68x in every run, quiet or loaded).
    # One at a time it keeps its full rate on a quiet machine (0.95-1.06x), but the 1-user and 2-user steps
    # run at different times, and a busy shared machine halved it once (0.54x): printed, not asserted.
    assert cpp[2]["per_request"] < 0.85 * cpp[1]["per_request"], figures
    # The total rate is a figure, not an assertion: on 2 shared cores its 2-user/1-user ratio ranged
    # 0.89-1.37x with batching and 0.24-0.92x one at a time (docs/engine.md); printed above for the log.

    report = open(os.path.join(folder, "results.md"), encoding="utf-8").read()
    assert "**Degradation per step:**" in report and "- 2 users: p95" in report
