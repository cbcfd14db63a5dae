"""The tool knows when it is the bottleneck, and workers on several clocks agree on time (issue 17).

* A load process starved on purpose — 1200 users of the `instant` profile in one process pinned to one
  core beside a CPU hog — is flagged in that step's Notes, left out of the verdicts, and the conclusion
  says how to fix it; a light run (the clock test's paced steps) is not flagged.
* Two workers whose clocks are shifted by +500 ms and −300 ms (Debian's libfaketime, the real system
  clock calls faked, the monotonic clock left alone): the master measures both offsets and corrects
  their records, so every record's start time matches the simulator's truth log (the real clock) and
  every request lands in the stage in which it reached the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

from tests.e2e.helpers import LOCUSTFILE, LOAD, assert_no_traceback, free_port, read_csv, read_truth, run


def _hog(cpu: int):
    code = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"
    return subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", code])


def test_a_starved_generator_is_flagged(tmp_path, sim_process):
    sim = sim_process("--profile", "instant", "--num-parallel", "64")
    cpu = max(os.sched_getaffinity(0))
    run_dir = tmp_path / "starved"
    hog = _hog(cpu)
    try:
        result = run(["taskset", "-c", str(cpu), sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless",
                      "--host", sim.url, "--model", "llama3.2", "--shape", "step", "--steps", "2,1200",
                      "--step-time", "8s", "--run-dir", str(run_dir), "--num-predict", "20", "--think-time", "0",
                      "--drain-timeout", "3"], tmp_path, timeout=150, name="starved")
    finally:
        hog.kill()
        hog.wait()
    assert_no_traceback(result)
    assert result.code in (0, 1), result.text[-3000:]
    samples = read_csv(run_dir / "generator.csv")
    assert samples and {s["worker"] for s in samples} == {samples[0]["worker"]}
    assert "WARNING load generator saturated" in result.out  # the live line said so while it happened
    report = run([sys.executable, "-m", "ollama_locust", "report", str(run_dir), "--no-plots"], tmp_path,
                 timeout=120, name="report")
    assert report.code == 0, report.text[-2000:]
    rows = {line.split("|")[1].strip(): line for line in report.out.splitlines() if line.startswith("| ")}
    assert "the load generator was saturated" in rows["1200"]
    data = json.loads((run_dir / "results.json").read_text())
    # the 1200-user step is named; the 2-user step beside the hog may be too: its hub ran 14-31 ms late at p99
    # there (the limit is 20 ms), in runs with either way of counting connections (generator.csv)
    text, lead = " ".join(data["conclusion"]["text"]), "**The load generator could not keep up** at "
    assert lead in text, text
    flagged = text.split(lead, 1)[1].split(" (", 1)[0]
    assert "1200 users" in flagged, text


def _faked(shift: str) -> dict:
    return {**os.environ, "FAKETIME": shift, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "LD_PRELOAD": _libfaketime(), "PYTHONUNBUFFERED": "1"}


def _libfaketime() -> str:
    for path in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"):
        if os.path.exists(path):
            return path
    raise AssertionError("libfaketime is missing: scripts/test.sh installs Debian's faketime")


def test_shifted_worker_clocks_are_corrected(tmp_path, sim_process):
    truth_path = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "200", "--prefill-tps", "5000", "--num-parallel", "4",
                      "--truth-log", str(truth_path))
    port = free_port()
    run_dir = tmp_path / "clocks"
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--host", sim.url, "--model", "llama3.2",
         "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "2",
         "--shape", "step", "--steps", "2,4", "--step-time", "5s", "--run-dir", str(run_dir), *LOAD],
        stdout=open(tmp_path / "master.log", "w"), stderr=subprocess.STDOUT, cwd=tmp_path)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port)], env=_faked(shift), stdout=open(tmp_path / f"worker{i}.log", "w"),
        stderr=subprocess.STDOUT, cwd=tmp_path) for i, shift in enumerate(("+0.5", "-0.3"))]
    try:
        assert master.wait(120) in (0, 1), (tmp_path / "master.log").read_text()[-3000:]
    finally:
        for proc in (master, *workers):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = "".join((tmp_path / name).read_text() for name in ("master.log", "worker0.log", "worker1.log"))
    assert "Traceback" not in logs, logs[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    offsets = sorted(entry["offset_ms"] for entry in info["clock_offsets"].values())
    assert len(offsets) == 2, info["clock_offsets"]
    assert abs(offsets[0] + 300) < 30 and abs(offsets[1] - 500) < 30, info["clock_offsets"]
    for entry in info["clock_offsets"].values():
        assert entry["uncertainty_ms"] < 30, info["clock_offsets"]

    truth = {t["client_request_id"]: t for t in read_truth(truth_path)}
    stages = read_csv(run_dir / "stages.csv")
    records = read_csv(run_dir / "requests.csv")
    assert len({r["worker"] for r in records}) == 2 and len(records) > 20
    starts = [float(s["start_time"]) for s in stages]
    last_end = float(stages[-1]["end_time"])
    ttft_errors = []
    for record in records:
        # every reply measured whole: a kernel stamp read on a shifted clock dated no byte before its request
        assert record["outcome"] == "ok", record
        row = truth[record["request_id"]]
        ttft_errors.append(float(record["ttft_ms"]) - (row["first_token_sent"] - row["arrival"]) * 1000)
        arrival = row["arrival"]
        sent = float(record["start_time"])
        # on the real clock again: uncorrected, these would be 300 and 500 ms off (the bound allows for the
        # simulator reading a request late on a loaded 2-core machine)
        assert -0.030 < arrival - sent < 0.150, (record["worker"], arrival - sent)
        near_a_change = any(abs(arrival - edge) < 0.150 for edge in (*starts, last_end))
        stage_by_truth = max((i for i, start in enumerate(starts) if start <= arrival), default=-1)
        if arrival >= last_end:
            stage_by_truth = -1  # the drain: in no step
        assert near_a_change or int(record["stage"]) == stage_by_truth, record

    # the kernel's stamps, read on a shifted clock, date no first token before the server sent it (uncorrected:
    # a stream_error, or 500 ms early, on the worker 0.5 s ahead); measured -4..+5 ms, the bound
    # allows for a loaded 2-core machine
    assert min(ttft_errors) > -20, sorted(ttft_errors)[:5]

    report = run([sys.executable, "-m", "ollama_locust", "report", str(run_dir), "--no-plots"], tmp_path,
                 timeout=120, name="report")
    assert report.code == 0, report.text[-2000:]
    assert "the load generator was saturated" not in report.out  # a light run is not flagged
    assert len(read_csv(run_dir / "generator.csv")) >= 2 * 8  # both workers, every second
