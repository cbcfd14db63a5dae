"""`ollama-locust step` hands on only the options it was given, so locust.conf applies to a step test
as it does to plain `locust` (issue 19, item 3)."""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.helpers import SIM_ARGS, LOAD, assert_no_traceback, ollama_locust, only_run_dir, run

LOCUST_CONF = """\
model = llama3.2
think-time = 0
num-predict = 20
steps = 1,2
step-time = 3s
drain-timeout = 5
label = from-locust-conf
"""


def test_locust_conf_is_honoured_by_step(tmp_path, sim_process):
    sim = sim_process(*SIM_ARGS)
    (tmp_path / "locust.conf").write_text(LOCUST_CONF)
    result = run(ollama_locust("step", "--host", sim.url, "--out", str(tmp_path / "runs"), "--no-report"),
                 tmp_path, cwd=tmp_path, timeout=120, name="step")
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as handle:
        info = json.load(handle)
    assert info["label"] == "from-locust-conf"
    assert info["steps"] == [1, 2] and info["step_time_s"] == 3.0
    assert info["options"]["think_time"] == "0" and info["options"]["num_predict"] == 20
    assert info["command"][:2] == ["ollama-locust", "step"]  # step's context reached run.json's one writer


def test_locust_conf_host_is_honoured_by_step(tmp_path, sim_process):
    """``host =`` in locust.conf is the target when step gets no --host (step's default no longer wins)."""
    sim = sim_process(*SIM_ARGS)
    (tmp_path / "locust.conf").write_text(LOCUST_CONF + f"host = {sim.url}\nmodel = llama3.2:latest\n")
    result = run(ollama_locust("step", "--out", str(tmp_path / "runs"), "--no-report"), tmp_path, cwd=tmp_path,
                 timeout=120, name="step")
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    info = json.load(open(os.path.join(only_run_dir(tmp_path / "runs"), "run.json"), encoding="utf-8"))
    assert info["host"] == sim.url and info["model"] == "llama3.2:latest", info
    assert info["requests"] > 0 and "default_host" not in info


@pytest.mark.parametrize("case", ["workers_and_master", "run_dir_taken"])
def test_step_refuses_contradictions_up_front(tmp_path, case):
    """``--workers N --master`` and a ``--run-dir`` that already holds a run: one line, exit 2, nothing started."""
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "requests.csv").write_text("request_id\n")
    extra = ["--workers", "2", "--master"] if case == "workers_and_master" else ["--run-dir", str(taken)]
    result = run(ollama_locust("step", "--host", "http://127.0.0.1:9", "--users", "1", "--step-time", "2s", *extra),
                 tmp_path, timeout=30)
    assert_no_traceback(result)
    assert result.code == 2, result.text[-2000:]
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert ("exclude each other" if case == "workers_and_master" else "already holds a run") in lines[0], lines


def test_step_run_dir_works(tmp_path, sim_process):
    """``step --run-dir X`` (which step's own error text suggests) writes the run into X."""
    sim = sim_process(*SIM_ARGS)
    folder = tmp_path / "mine"
    result = run(ollama_locust("step", "--host", sim.url, "--users", "1", "--step-time", "2s", "--run-dir", str(folder),
                               *LOAD), tmp_path, timeout=90)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    info = json.load(open(folder / "run.json", encoding="utf-8"))
    assert info["requests"] > 0 and (folder / "results.md").exists() and (folder / "requests.csv").exists()
