"""`ollama-locust probe` against the simulator (ground truth known) and against bad targets."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ollama_locust import contract
from ollama_locust.scenarios import preflight, probe


def test_probe_recovers_the_simulators_timing_within_its_budget(sim, tmp_path, capsys):
    url = sim(profile="gpu-llama3-8b", num_parallel=2, decode_tps=400.0, prefill_tps=4000.0, load_time=0.5, beta=0.5)
    started = time.monotonic()
    code = probe.main(["--host", url, "--model", "llama3.2", "--max-time", "20s", "--out", str(tmp_path)])
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0, out
    assert elapsed <= 20 + 2  # --max-time bounds it (the last request's timeout is what was left)
    data = json.loads((tmp_path / contract.PROBE_FILE).read_text())
    server = data["server"]
    assert data["timing_source"] == "server" and data["requests"] <= probe.MAX_REQUESTS
    assert server["decode_tps"] == pytest.approx(400, rel=0.03)
    assert server["prefill_tps"] == pytest.approx(4000, rel=0.03)
    assert server["num_parallel"] == 2
    assert server["beta"] == pytest.approx(0.5, abs=0.08)
    assert server["load_time"] == pytest.approx(0.5, abs=0.05)  # the simulator starts cold: the warm-up loads it
    assert 10 <= len(data["reply_tokens"]["StudentUser"]) <= 48
    assert "effective slots (NUM_PARALLEL) 2" in out and (tmp_path / "probe.md").exists()


class _Html(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<!doctype html><html><body>a web app</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def html_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("target", ["unreachable", "non-llm", "unknown-model"])
def test_bad_targets_get_the_same_one_line_error_as_step(target, sim, html_server, tmp_path, capsys):
    host, model = {"unreachable": (f"http://127.0.0.1:{_free_port()}", "llama3.2"),
                   "non-llm": (html_server, "llama3.2"),
                   "unknown-model": (None, "nope")}[target]
    host = host or sim(profile="instant")
    with pytest.raises(preflight.PreflightError) as expected:  # what `step`'s preflight says for this target
        preflight.check_target(host, model, "ollama-chat")
    code = probe.main(["--host", host, "--model", model, "--max-time", "10s", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == contract.EXIT_BAD_INPUT
    assert err == f"ollama-locust: {expected.value}"  # the line the step's plugin prints
    assert not (tmp_path / contract.PROBE_FILE).exists()
