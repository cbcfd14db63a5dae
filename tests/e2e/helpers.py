"""Running real `ollama-locust` / `locust` processes in tests: bounded, output drained to files."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCUSTFILE = os.path.join(REPO, "locustfile.py")
# A paced simulator: short replies at a modest rate, so every step completes many requests.
SIM_ARGS = ["--profile", "instant", "--decode-tps", "200", "--prefill-tps", "5000", "--num-parallel", "4"]
# Load options for short e2e steps: no think time, short replies, a bounded drain.
LOAD = ["--think-time", "0", "--num-predict", "20", "--drain-timeout", "5"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run(args: list[str], tmp_path, timeout: float = 120, cwd=None, env=None, name="cmd") -> Result:
    """Run a command to completion with its output in files (no pipe can fill up)."""
    out_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.run(args, stdout=out, stderr=err, timeout=timeout, cwd=cwd or tmp_path,
                              env={**os.environ, **(env or {})})
    return Result(proc.returncode, out_path.read_text(), err_path.read_text())


def ollama_locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "ollama_locust", *args]


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_truth(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def only_run_dir(parent) -> str:
    folders = [os.path.join(parent, d) for d in os.listdir(parent)]
    folders = [f for f in folders if os.path.isdir(f)]
    assert len(folders) == 1, folders
    return folders[0]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.text, result.text[-3000:]


def truth_in_window(truth: list[dict], lo: float, hi: float) -> tuple[int, int]:
    """(tokens the simulator sent, requests it completed ok) inside [lo, hi), from its truth log
    (``token_sent_ms`` per token after ``arrival``; completion = ``last_byte_sent``)."""
    tokens = completed = 0
    for t in truth:
        arrival = t.get("arrival")
        for ms in t.get("token_sent_ms") or ():
            if lo <= arrival + ms / 1000.0 < hi:
                tokens += 1
        end = t.get("last_byte_sent")
        if t.get("outcome") == "ok" and end is not None and lo <= end < hi:
            completed += 1
    return tokens, completed


def report_vs_truth(run_dir: str, truth_path) -> list[dict]:
    """Per step of the run's report: its Tokens/s (total), Req/s and window next to the truth's."""
    from ollama_locust.reports import analyse

    truth = [t for t in read_truth(truth_path) if t.get("client_request_id")]
    rows = []
    for step in analyse(run_dir).steps:
        lo, hi = step.window
        tokens, completed = truth_in_window(truth, lo, hi)
        width = hi - lo
        rows.append({"users": step.users, "window_s": width,
                     "tokens_per_s": step.metrics["tokens_per_s_total"], "truth_tokens_per_s": tokens / width,
                     "req_per_s": step.metrics["req_per_s"], "truth_req_per_s": completed / width,
                     "users_held": step.users_mean, "requests": step.metrics["requests"]})
    return rows
