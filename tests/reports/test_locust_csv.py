"""The Locust-CSV-only path, on real output of a real `locust --headless --csv` run made here."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

from ollama_locust.reports import write_report
from ollama_locust.reports.cli import compare_main

LOCUSTFILE = textwrap.dedent("""
    from locust import HttpUser, constant, task

    class Quick(HttpUser):
        wait_time = constant(0.05)

        @task(9)
        def ok(self):
            self.client.get("/ok")

        @task(1)
        def broken(self):
            self.client.get("/fail")
""")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        status = 200 if self.path == "/ok" else 500
        body = b"hello"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def locust_run(tmp_path_factory):
    if shutil.which("locust") is None and not _has_locust_module():
        pytest.skip("locust is not installed")
    folder = tmp_path_factory.mktemp("locust-only")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        locustfile = folder / "lf.py"
        locustfile.write_text(LOCUSTFILE)
        out = folder / "run"
        out.mkdir()
        host = f"http://127.0.0.1:{server.server_address[1]}"
        cmd = [sys.executable, "-m", "locust", "--headless", "-f", str(locustfile), "--host", host,
               "-u", "2", "-r", "2", "-t", "4s", "--csv", str(out / "plain"), "--csv-full-history",
               "--only-summary", "--exit-code-on-error", "0"]
        with open(folder / "locust.log", "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=60, cwd=str(folder))
        assert done.returncode == 0, (folder / "locust.log").read_text()[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    return str(out)


def _has_locust_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("locust") is not None


def test_report_from_locust_csv_only(locust_run):
    assert os.path.exists(os.path.join(locust_run, "plain_stats_history.csv"))
    report = write_report(locust_run)
    data = report.data
    assert data["source"] == "locust-csv"
    assert "Locust's rounded percentiles" in data["percentiles"]
    assert "Locust's rounded percentiles" in report.markdown
    steps = [s for s in data["steps"] if s["requests"]]
    assert steps and steps[-1]["users"] == 2
    top = steps[-1]
    assert top["requests"] > 20
    assert 0.7 < top["success_rate"] < 1.0  # one task in ten hits /fail
    assert top["p50_ms"] is not None and top["req_per_s"] > 0
    assert top["tokens_per_s_request"] is None  # not measurable from Locust's CSVs
    # The per-step request counts add up to Locust's own total.
    import csv

    with open(os.path.join(locust_run, "plain_stats.csv")) as fh:
        total = next(int(r["Request Count"]) for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    assert sum(s["requests"] for s in data["steps"]) == pytest.approx(total, abs=total * 0.1 + 2)
    assert os.path.exists(os.path.join(locust_run, "results.md"))


def test_locust_stats_csv_without_history(locust_run, tmp_path):
    only = tmp_path / "stats-only"
    only.mkdir()
    shutil.copy(os.path.join(locust_run, "plain_stats.csv"), only / "x_stats.csv")
    report = write_report(str(only), plots=False)
    assert len(report.data["steps"]) == 1
    assert "over the whole test" in report.data["percentiles"]
    assert report.data["steps"][0]["requests"] > 20


def test_compare_accepts_a_locust_only_folder(locust_run, capsys):
    assert compare_main([locust_run, locust_run]) == 0
    out = capsys.readouterr().out
    assert "percentiles are Locust's rounded ones" in out
