"""Several load machines, on loopback, with the exact commands of docs/deploy.md ("Several machines").

The master (`ollama-locust step ... --master --expect-workers 2`) and two workers
(`locust -f locustfile.py --worker --master-host H --master-port P`) run as separate processes in
separate working directories; they share only the master's host and port. The run folder, written by
the master alone, must be complete and hold exactly the requests the simulator saw, as a
single-process run of the same plan does.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs" / "deploy.md"
SIM = ["--profile", "instant", "--decode-tps", "200", "--prefill-tps", "5000", "--num-parallel", "4"]
PLAN = ["--users", "2,4", "--step-time", "4s", "--think-time", "0", "--num-predict", "20", "--drain-timeout", "5",
        "--no-report"]
FOLDER_FILES = {"requests.csv", "stages.csv", "run.json", "locust_stats.csv", "locust.log"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def truth_ids(path) -> set[str]:
    lines = [json.loads(line) for line in open(path) if line.strip()]
    return {t["client_request_id"] for t in lines if t.get("client_request_id")}


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")} | {"PYTHONUNBUFFERED": "1"}


def only_folder(parent: Path) -> Path:
    [folder] = [parent / name for name in os.listdir(parent)]
    return folder


def check_folder(run_dir: Path, truth: Path) -> list[dict]:
    assert FOLDER_FILES <= set(os.listdir(run_dir)), sorted(os.listdir(run_dir))
    assert [int(s["users"]) for s in rows(run_dir / "stages.csv")] == [2, 4]
    records = rows(run_dir / "requests.csv")
    ids = [r["request_id"] for r in records]
    assert len(ids) == len(set(ids)) > 0
    assert set(ids) == truth_ids(truth)  # every request the simulator served, once; nothing invented
    assert json.loads((run_dir / "run.json").read_text())["interrupted"] is False
    return records


def test_the_docs_show_these_commands():
    docs = DOCS.read_text()
    assert "locust -f locustfile.py --worker --master-host" in docs
    assert "--master --expect-workers" in docs
    assert "5557" in docs and "8089" in docs


def test_master_and_two_workers_in_separate_folders(tmp_path, sim_process):
    truth = tmp_path / "truth-distributed.jsonl"
    sim = sim_process(*SIM, "--truth-log", str(truth))
    port = free_port()
    master_dir = tmp_path / "master-machine"
    master_dir.mkdir()
    master = subprocess.Popen(
        [sys.executable, "-m", "ollama_locust", "step", "--host", sim.url, *PLAN, "--label", "distributed",
         "--master", "--expect-workers", "2", "--master-port", str(port)],
        cwd=master_dir, env=env(), stdout=open(master_dir / "out.log", "w"), stderr=subprocess.STDOUT)
    workers = []
    for index in (1, 2):
        # A load machine: a copy of the locustfile and the installed package, nothing else.
        folder = tmp_path / f"worker-machine-{index}"
        folder.mkdir()
        shutil.copy(REPO / "locustfile.py", folder / "locustfile.py")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", "locustfile.py", "--worker", "--master-host", "127.0.0.1",
             "--master-port", str(port)],
            cwd=folder, env=env(), stdout=open(folder / "out.log", "w"), stderr=subprocess.STDOUT))
    try:
        code = master.wait(90)
    finally:
        for proc in (master, *workers):
            if proc.poll() is None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    out = (master_dir / "out.log").read_text()
    logs = out + "".join((tmp_path / f"worker-machine-{i}" / "out.log").read_text() for i in (1, 2))
    assert "Traceback" not in logs, logs[-4000:]
    assert code == 0, out[-3000:]
    assert "--worker --master-host" in out  # the master tells the user what to run on the load machines
    run_dir = only_folder(master_dir / "runs")
    records = check_folder(run_dir, truth)
    assert len({r["worker"] for r in records}) == 2  # both workers sent load; the master wrote it all
    for index in (1, 2):  # workers write no run folder of their own
        assert not (tmp_path / f"worker-machine-{index}" / "runs").exists()

    # The same plan in one process: the same folder, and the same kind of record count.
    single_truth = tmp_path / "truth-single.jsonl"
    single_sim = sim_process(*SIM, "--truth-log", str(single_truth))
    single_dir = tmp_path / "single-machine"
    single_dir.mkdir()
    result = subprocess.run([sys.executable, "-m", "ollama_locust", "step", "--host", single_sim.url, *PLAN,
                             "--label", "single"], cwd=single_dir, env=env(), capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    single = check_folder(only_folder(single_dir / "runs"), single_truth)
    assert len({r["worker"] for r in single}) == 1
    assert list(single[0]) == list(records[0])  # same columns
    assert 0.5 < len(records) / len(single) < 2.0, (len(records), len(single))
