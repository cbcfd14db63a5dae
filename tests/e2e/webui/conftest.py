"""Fixtures of the web-UI tests: a real locust master with workers (subprocesses) and a real headless
Chromium driven by Playwright. Nothing here imports locust or gevent: they stay in the subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from tests.e2e.webui.helpers import CHROMIUM, CHROMIUM_ARGS, LOCUSTFILE, Cluster, Proc, free_port, get_json, wait_for


@pytest.fixture
def locust_cluster(tmp_path):
    """Factory: ``cluster = locust_cluster(workers=2, extra=[...], locustfile=...)``: a master with its web UI on a free port
    and ``workers`` workers, all real ``locust`` processes on 127.0.0.1; stopped at the end of the test."""
    started: list[Cluster] = []

    def start(workers: int = 2, extra: list[str] | None = None, locustfile: str = LOCUSTFILE,
              skip_preflight: bool = True) -> Cluster:
        web_port, master_port = free_port(), free_port()
        run_dir = str(tmp_path / f"run{len(started)}")
        cluster = Cluster(url=f"http://127.0.0.1:{web_port}/", run_dir=run_dir)
        started.append(cluster)
        # --skip-preflight (unless asked): the target is checked by the other tests; here the UI is under test
        master = ["--web-host", "127.0.0.1", "--web-port", str(web_port), "--run-dir", run_dir,
                  *(["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)] if workers else []),
                  *(["--skip-preflight"] if skip_preflight else []), *(extra or [])]
        commands = [("master", master)] + [
            (f"worker{i}", ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)])
            for i in range(1, workers + 1)]
        for name, args in commands:
            out_path, err_path = str(tmp_path / f"{name}.out"), str(tmp_path / f"{name}.err")
            with open(out_path, "w") as out, open(err_path, "w") as err:
                proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", locustfile, *args], stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
            cluster.procs.append(Proc(name, proc, out_path, err_path))
        if workers:
            wait_for(lambda: get_json(cluster.url + "worker-count")["worker_count"] == workers, 60,
                     f"{workers} workers to connect\n{cluster.logs()[-3000:]}")
        else:
            wait_for(lambda: urllib.request.urlopen(cluster.url, timeout=5).status == 200, 60, "the web UI")
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def browser_page():
    """A fresh headless Chromium (Debian's, through Playwright; fresh user-data dir) -> a Playwright page."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: scripts/test.sh installs Debian's chromium")
    profile = tempfile.mkdtemp(prefix="ollama-locust-chromium-")
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, accept_downloads=True,
                viewport={"width": 1600, "height": 1000}, timeout=60_000)
            context.set_default_timeout(30_000)
            try:
                yield context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
