"""`ollama-locust step` hands on only the options it was given, so locust.conf applies to a step test
as it does to plain `locust` (issue 19, item 3)."""

from __future__ import annotations

import json
import os

from tests.e2e.helpers import SIM_ARGS, assert_no_traceback, ollama_locust, only_run_dir, run

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
