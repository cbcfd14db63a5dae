"""`ollama-locust step … --predict PROBE.json`: predicted beside measured, after a real (short) step test."""

from __future__ import annotations

import json
from pathlib import Path

from ollama_locust.simulator.profiles import PROBE_FORMAT
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, run


def test_step_prints_the_prediction_beside_the_measurement(tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"format": PROBE_FORMAT, "target": {"model": "llama3.2:latest"},
                                 "server": {"decode_tps": 100.0, "prefill_tps": 2500.0, "beta": 0.3, "load_time": 4.0,
                                            "num_parallel": 1, "overhead_s": 0.001},
                                 "reply_tokens": {"StudentUser": [72, 80, 90, 100, 108]}}))
    result = run(ollama_locust("step", "--sim", "gpu-llama3-8b", "--users", "1,2", "--step-time", "6s",
                               "--predict", str(probe), "--out", str(tmp_path / "runs")), tmp_path, timeout=180)
    assert result.code == 0, result.text
    assert_no_traceback(result)
    assert "Predicted (from" in result.out and "measured / predicted (error)" in result.out
    run_dir = Path(only_run_dir(tmp_path / "runs"))
    assert (run_dir / "predicted-beside-measured.md").exists()
    assert json.loads((run_dir / "predicted" / "results.json").read_text())["predicted"] is True
