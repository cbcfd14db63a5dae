"""The accuracy gate of issue 15, with the simulator as the server (ground truth known): probe it, predict
1, 2, 4, 8 users x 25 s, run the real step test on the same simulator, and hold every per-step p50, p95,
TTFT p50, Tokens/s (total) and Req/s within 15 % of the measured, with the same verdict (wait / share)
and the same largest user count meeting the SLO. Three settings (gate.SETTINGS): one queueing
(NUM_PARALLEL 1), one sharing (4 slots, beta 0.3), one CPU-like (2 slots, beta 0.95, slow prefill).
About 2.5 minutes per setting (the step test is most of it)."""

from __future__ import annotations

import pytest

from ollama_locust.scenarios import probe
from tests.e2e.predict import gate


@pytest.mark.timeout(900)
@pytest.mark.parametrize("setting", gate.SETTINGS, ids=[s.name.split(":")[0] for s in gate.SETTINGS])
def test_prediction_matches_the_measured_step_test(setting, tmp_path):
    result = gate.run_setting(setting, str(tmp_path))
    print("\n" + gate.table(result))
    assert result["probe_s"] <= 60 + 2 and result["probe_requests"] <= probe.MAX_REQUESTS  # bounded: --max-time 60s
    assert result["largest"][0] == result["largest"][1], gate.table(result)
    assert result["mode"][0] == result["mode"][1], gate.table(result)
    off = [(row["users"], key, round(e * 100)) for row in result["rows"] for key, _ in gate.FIGURES
           for e in [row[key][2]] if e is None or abs(e) > gate.TOLERANCE]
    assert not off, f"figures more than {gate.TOLERANCE:.0%} off (users, figure, error %): {off}\n" + gate.table(result)
