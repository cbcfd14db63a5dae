"""``ollama-locust sim --engine llama-cpp --model-file M``: the simulator's API and scheduler, tokens from
llama.cpp (issue 8, item 5). Real processes on 127.0.0.1; the official ``ollama`` client as the peer.

The tiny model (``scripts/tiny_gguf.py``, see docs/engine.md) prints one ASCII character per token and
never ends by itself, so: every token is one streamed chunk, every reply runs to ``num_predict``
(done_reason "length") unless a stop string ends it, and a prompt costs BOS + "▁" + one token per
UTF-8 byte — which lets these tests check the engine's real prompt token counts independently.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from llama_engine import ENGINE_MISSING
from ollama_locust.simulator.server import _wait_for_url
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, read_csv, read_truth, run

ollama = pytest.importorskip("ollama")

MODEL = "tiny-test"  # the tiny_model fixture's file is tiny-test.gguf: served under its name
TEMPLATE = "<|im_start|>{role}\n{content}<|im_end|>\n"  # the tiny model's chat template (ChatML-like)
GEN_PROMPT = "<|im_start|>assistant\n"


def chat_prompt_tokens(messages: list[dict]) -> int:
    """Prompt tokens of a chat on the tiny model: BOS, the SentencePiece "▁" prefix, one token per byte."""
    text = "".join(TEMPLATE.format(**m) for m in messages) + GEN_PROMPT
    return 2 + len(text.encode("utf-8"))


@contextlib.contextmanager
def engine_sim(model: Path, *flags: str, timeout: float = 30) -> Iterator[str]:
    """``ollama-locust sim --engine llama-cpp --model-file MODEL --port 0 FLAGS`` as a child process."""
    pytest.importorskip("llama_cpp", reason=ENGINE_MISSING)
    stderr = tempfile.NamedTemporaryFile(prefix="engine-sim-", suffix=".stderr", delete=False)
    cmd = ollama_locust("sim", "--engine", "llama-cpp", "--model-file", str(model), "--port", "0", *flags)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        yield _wait_for_url(proc, timeout, stderr.name)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr.close()
        err = Path(stderr.name).read_text(errors="replace")
        os.unlink(stderr.name)
        assert "Traceback" not in err, err[-3000:]


@pytest.fixture(scope="module")
def truth_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-sim") / "truth.jsonl"


@pytest.fixture(scope="module")
def url(tiny_model, truth_path) -> Iterator[str]:
    """One engine-backed simulator for the module: 2 slots (both wait for the one engine), a truth log."""
    with engine_sim(tiny_model, "--num-parallel", "2", "--truth-log", str(truth_path)) as u:
        yield u


@pytest.fixture
def client(url):
    return ollama.Client(host=url)


def _check_durations(final) -> None:
    assert final.total_duration > 0 and final.prompt_eval_duration > 0 and final.eval_duration > 0, final
    assert (final.load_duration or 0) + final.prompt_eval_duration + final.eval_duration <= final.total_duration


def test_chat_stream_and_non_stream_agree_with_real_counts(client):
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    opts = {"seed": 11, "temperature": 0, "num_predict": 48}
    chunks = list(client.chat(model=MODEL, messages=msgs, stream=True, options=opts))
    body, final = chunks[:-1], chunks[-1]
    assert final.done and not any(c.done for c in body)
    text = "".join(c.message.content for c in body)
    whole = client.chat(model=MODEL, messages=msgs, stream=False, options=opts)
    assert whole.message.content == text and len(text) == 48
    # one token per chunk here (one ASCII character per token), and num_predict ends it
    assert final.eval_count == len(body) == 48 == whole.eval_count
    assert final.done_reason == whole.done_reason == "length"
    # the engine's token count of the prompt the chat template made
    assert final.prompt_eval_count == whole.prompt_eval_count == chat_prompt_tokens(msgs)
    _check_durations(final)
    _check_durations(whole)


def test_generate_templated_raw_and_context(client):
    opts = {"seed": 3, "temperature": 0, "num_predict": 32}
    chunks = list(client.generate(model=MODEL, prompt="Hello", stream=True, options=opts))
    body, final = chunks[:-1], chunks[-1]
    whole = client.generate(model=MODEL, prompt="Hello", stream=False, options=opts)
    assert "".join(c.response for c in body) == whole.response
    assert final.eval_count == len(body) == whole.eval_count == 32 and final.done_reason == "length"
    # /api/generate applies the model's template, as Ollama does ...
    assert whole.prompt_eval_count == chat_prompt_tokens([{"role": "user", "content": "Hello"}])
    # ... and the context is the real token ids: prompt + reply
    assert len(whole.context) == whole.prompt_eval_count + whole.eval_count and whole.context[0] == 1
    _check_durations(final)
    # raw: the prompt as it is (BOS, "▁", H, e, l, l, o)
    raw = client.generate(model=MODEL, prompt="Hello", raw=True, stream=False, options=opts)
    assert raw.prompt_eval_count == 7
    assert raw.response != whole.response


def test_stop_string_seed_and_temperature(client):
    base_opts = {"seed": 5, "temperature": 0, "num_predict": 40}
    base = client.generate(model=MODEL, prompt="Tell me a story", stream=False, options=base_opts).response
    stop = base[12:14]
    cut = base.find(stop)
    opts = dict(base_opts, stop=[stop])
    stopped = client.generate(model=MODEL, prompt="Tell me a story", stream=False, options=opts)
    assert stopped.done_reason == "stop"
    assert stopped.response == base[:cut]
    assert stopped.eval_count == cut + len(stop)  # the stop string's tokens were generated, not sent
    chunks = list(client.generate(model=MODEL, prompt="Tell me a story", stream=True, options=opts))
    assert "".join(c.response for c in chunks[:-1]) == base[:cut] and chunks[-1].done_reason == "stop"
    # temperature > 0: the seed decides
    hot = {"temperature": 1.0, "num_predict": 40}
    a = client.generate(model=MODEL, prompt="Tell me a story", options=dict(hot, seed=1)).response
    b = client.generate(model=MODEL, prompt="Tell me a story", options=dict(hot, seed=1)).response
    c = client.generate(model=MODEL, prompt="Tell me a story", options=dict(hot, seed=2)).response
    assert a == b != c


def test_openai_endpoints(url):
    rid = str(uuid.uuid4())
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12, "temperature": 0}
    r = httpx.post(url + "/v1/chat/completions", json=chat, timeout=30, headers={"X-Request-ID": rid}).json()
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["usage"] == {"prompt_tokens": chat_prompt_tokens(chat["messages"]), "completion_tokens": 12,
                          "total_tokens": chat_prompt_tokens(chat["messages"]) + 12}
    with httpx.stream("POST", url + "/v1/chat/completions", json=dict(chat, stream=True), timeout=30) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    contents = [e["choices"][0]["delta"].get("content") for e in events[1:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(contents) == r["choices"][0]["message"]["content"] and len(contents) == 12
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    comp = {"model": MODEL, "prompt": "Once", "max_tokens": 10, "temperature": 0}
    c = httpx.post(url + "/v1/completions", json=comp, timeout=30).json()
    with httpx.stream("POST", url + "/v1/completions", json=dict(comp, stream=True), timeout=30) as resp:
        texts = [json.loads(line[6:])["choices"][0]["text"] for line in resp.iter_lines() if line.startswith("data: {")]
    assert "".join(texts) == c["choices"][0]["text"] and len(c["choices"][0]["text"]) == 10


def test_engine_serialises_concurrent_requests(url, truth_path):
    """Two requests at once with 2 slots: both get a slot at once, the later one waits for the one engine."""
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    results: dict[str, dict] = {}
    barrier = threading.Barrier(2)

    def ask(rid: str, prompt: str) -> None:
        body = {"model": MODEL, "prompt": prompt, "stream": False, "options": {"num_predict": 800, "temperature": 0}}
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            results[rid] = http.post(url + "/api/generate", json=body, headers={"X-Request-ID": rid}).json()

    threads = [threading.Thread(target=ask, args=(rid, p)) for rid, p in zip(ids, ("First one", "Second one"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    earlier, later = sorted(results.values(), key=lambda r: r["created_at"])  # when each reply was finished

    def waited(r: dict) -> int:  # Ollama's only trace of a wait: total - load - prompt eval - eval
        return r["total_duration"] - r.get("load_duration", 0) - r["prompt_eval_duration"] - r["eval_duration"]

    engine_ns = earlier["prompt_eval_duration"] + earlier["eval_duration"]
    assert later["eval_count"] == earlier["eval_count"] == 800
    assert waited(later) > 0.7 * engine_ns, (earlier, later)
    assert waited(earlier) < 0.3 * engine_ns, (earlier, later)
    # the truth log: both had a slot within milliseconds (2 slots): the wait was for the engine
    deadline = time.monotonic() + 5  # a request's line is written once its reply has gone out
    while True:
        truth = {r["client_request_id"]: r for r in read_truth(truth_path) if r["client_request_id"] in ids}
        if set(truth) == set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(truth) == set(ids)
    for r in truth.values():
        assert r["outcome"] == "ok" and r["output_tokens"] == 800
        assert r["slot_start"] - r["arrival"] < 0.1, r


def test_disconnect_frees_the_engine(url, truth_path):
    """A client that leaves mid-stream stops its generation: the next request does not wait for it."""
    rid = str(uuid.uuid4())
    long_body = {"model": MODEL, "prompt": "Long", "options": {"num_predict": 3000}}  # seconds of work
    with httpx.stream("POST", url + "/api/generate", json=long_body, timeout=30, headers={"X-Request-ID": rid}) as resp:
        first = next(resp.iter_lines())
    assert json.loads(first)["done"] is False
    start = time.monotonic()
    short = httpx.post(url + "/api/generate", timeout=30, json={"model": MODEL, "prompt": "Short", "stream": False,
                                                               "options": {"num_predict": 4}}).json()
    assert short["eval_count"] == 4 and time.monotonic() - start < 0.5, short
    time.sleep(0.1)
    left = [r for r in read_truth(truth_path) if r["client_request_id"] == rid]
    assert [r["outcome"] for r in left] == ["client_disconnected"] and left[0]["output_tokens"] < 3000


def test_model_load_keep_alive_and_ps(tiny_model):
    with engine_sim(tiny_model) as u:
        c = ollama.Client(host=u)
        assert [m.model for m in c.list().models] == [f"{MODEL}:latest"]
        assert c.ps().models == []
        msgs = [{"role": "user", "content": "Hi"}]
        cold = c.chat(model=MODEL, messages=msgs, options={"num_predict": 4}, keep_alive="1s")
        ps = c.ps().models
        assert [m.model for m in ps] == [f"{MODEL}:latest"] and ps[0].size_vram == 0 and ps[0].expires_at
        warm = c.chat(model=MODEL, messages=msgs, options={"num_predict": 4}, keep_alive="1s")
        assert cold.load_duration > 0 and cold.load_duration > 5 * warm.load_duration, (cold, warm)
        time.sleep(1.5)  # keep_alive 1 s expired: the model is unloaded
        assert c.ps().models == []
        again = c.chat(model=MODEL, messages=msgs, options={"num_predict": 4})
        assert again.load_duration > 5 * warm.load_duration, (again, warm)
        # an empty prompt only loads; with keep_alive 0 it unloads
        assert c.generate(model=MODEL, prompt="").done_reason == "load"
        assert c.generate(model=MODEL, prompt="", keep_alive=0).done_reason == "unload"
        assert c.ps().models == []


def test_faults_error_line_and_stall(tiny_model, tmp_path):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": 16}}
    truth = tmp_path / "truth.jsonl"
    with engine_sim(tiny_model, "--error-line-rate", "1", "--truth-log", str(truth)) as u:
        with httpx.stream("POST", u + "/api/chat", json=body, timeout=30) as resp:
            lines = [json.loads(x) for x in resp.iter_lines() if x.strip()]
        assert resp.status_code == 200
        assert "error" in lines[-1] and not any(x.get("done") for x in lines)
        assert 1 <= len(lines) - 1 < 16
    assert [r["outcome"] for r in read_truth(truth)] == ["error"]
    with engine_sim(tiny_model, "--stall", "0.5") as u:
        gaps, last = [], None
        with httpx.stream("POST", u + "/api/chat", json=body, timeout=30) as resp:
            for line in resp.iter_lines():
                now = time.monotonic()
                if last is not None:
                    gaps.append(now - last)
                last = now
        final = json.loads(line)
        assert final["done"] and final["eval_count"] == 16
        assert max(gaps) >= 0.45  # the engine paused mid-stream, holding its slot
        assert final["eval_duration"] >= 0.45e9


def test_step_against_engine_sim(tiny_model, tmp_path):
    """`step --sim` starts the engine-backed simulator itself; the model defaults to the file's name."""
    out = tmp_path / "runs"
    result = run(ollama_locust("step", "--sim", "--sim-args", f"--engine llama-cpp --model-file {tiny_model}",
                               "--api", "ollama-chat", "--users", "1,2",
                               "--step-time", "4s", "--think-time", "0", "--num-predict", "32",
                               "--drain-timeout", "10", "--out", str(out)),
                 tmp_path, timeout=90, name="step-engine-sim")
    assert result.code == 0, result.text[-3000:]
    assert_no_traceback(result)
    folder = only_run_dir(out)
    # <UTC ms>Z-<label>-<4 hex>: the label names the real engine and its model
    assert re.search(rf"-sim-llama-cpp-{re.escape(MODEL.split(':')[0])}-[0-9a-f]{{4}}$", os.path.basename(folder)), folder
    run_info = json.load(open(os.path.join(folder, "run.json"), encoding="utf-8"))
    assert run_info["model"].split(":")[0] == MODEL.split(":")[0]
    assert run_info["simulator"]["engine"] == "llama-cpp" and "profile" not in run_info["simulator"]
    records = read_csv(os.path.join(folder, "requests.csv"))
    ok = [r for r in records if r["outcome"] == "ok"]
    assert ok and len(ok) >= 0.95 * len([r for r in records if r["outcome"] != "cut_short"])
    for r in ok:
        assert int(r["output_tokens"]) == 32 and r["tokens_estimated"] == "False", r  # the server's eval_count
        assert float(r["prompt_eval_ms"]) > 0 and float(r["eval_ms"]) > 0, r
        assert float(r["prompt_eval_ms"]) + float(r["eval_ms"]) <= float(r["server_total_ms"]), r
        assert int(r["prompt_tokens"]) > 20, r  # the template's markers are tokens too
    assert {r["stage_users"] for r in ok if r["stage"] != "-1"} == {"1", "2"}  # -1: started in the drain
    report = open(os.path.join(folder, "results.md"), encoding="utf-8").read()
    assert "| Concurrent users |" in report and "## Where the time goes" in report
    assert "reports no server durations" not in report
    assert "with a real llama-cpp engine** (" in report and "not a real server" not in report


def _sim(tmp_path, *args: str, env: dict | None = None):
    return run(ollama_locust("sim", "--port", "0", *args), tmp_path, timeout=30, env=env, name="sim-bad")


@pytest.mark.parametrize("case, expect", [
    ("no-model-file", "--engine llama-cpp needs --model-file PATH"),
    ("model-file-without-engine", "--model-file needs --engine llama-cpp"),
    ("missing-file", "no such file"),
    ("not-gguf", "not a GGUF model file"),
    ("does-not-load", "llama.cpp cannot load it"),
    ("llama-cpp-missing", "install it with: pip install -e .[engine]"),
    ("timing-override", "--decode-tps has no effect with --engine llama-cpp"),
    ("two-names", "serves its one model file under one name"),
    ("unknown-engine", "unknown engine 'vllm'; available: sim, llama-cpp"),
])
def test_engine_bad_input_one_line_exit_2(case, expect, tiny_model, tmp_path):
    env = None
    model = str(tiny_model)
    args: list[str] = ["--engine", "llama-cpp", "--model-file", model]
    if case == "no-model-file":
        args = ["--engine", "llama-cpp"]
    elif case == "model-file-without-engine":
        args = ["--model-file", model]
    elif case == "missing-file":
        args[-1] = str(tmp_path / "nope.gguf")
    elif case == "not-gguf":
        args[-1] = str(tmp_path / "model.gguf")
        Path(args[-1]).write_text("this is not a model\n")
    elif case == "does-not-load":  # a GGUF file cut short: the header is fine, the tensors are missing
        args[-1] = str(tmp_path / "cut.gguf")
        Path(args[-1]).write_bytes(tiny_model.read_bytes()[:300_000])
    elif case == "llama-cpp-missing":  # an import path where `import llama_cpp` fails as when it is absent
        fake = tmp_path / "fake" / "llama_cpp"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'llama_cpp'\")\n")
        env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    elif case == "timing-override":
        args += ["--decode-tps", "5"]
    elif case == "two-names":
        args += ["--models", "a,b"]
    elif case == "unknown-engine":
        args = ["--engine", "vllm"]
    result = _sim(tmp_path, *args, env=env)
    assert result.code == 2, result.text
    assert_no_traceback(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ollama-locust sim: "), result.err
    assert expect in lines[0], lines[0]
    assert result.out == ""


def test_help_says_the_engine_serialises(tmp_path):
    result = run(ollama_locust("sim", "--help"), tmp_path, timeout=30, name="sim-help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "--model-file PATH" in text and "one sequence at a time" in text and "nothing is batched" in text
