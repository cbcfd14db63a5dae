"""Each option declared once (issue 19, item 3): the option table's default is what
`ollama-locust step --help`, the web UI's form and docs/options.md show. (`locust --help` prints its
help before it loads a locustfile, so it lists no plugin's options; docs/options.md says so.)"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ollama_locust import options

REPO = Path(__file__).resolve().parents[2]


def _help(args: list[str]) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={**os.environ, "COLUMNS": "400"}).stdout
    return re.sub(r"\s+", " ", out)


def test_docs_table_is_generated_from_the_rows():
    doc = (REPO / "docs" / "options.md").read_text(encoding="utf-8")
    assert options.markdown_table() in doc, "regenerate docs/options.md: python -m ollama_locust.options docs/options.md"


def test_step_help_shows_the_same_defaults():
    from ollama_locust import step

    text = _help([sys.executable, "-m", "ollama_locust", "step", "--help"])
    launcher = {"shape", "model", "label", *step.SIM_DEFAULTS}  # step says what it passes of its own
    for option in options.ALL_OPTIONS:
        if option.dest in ("run_dir", "run_context"):
            continue  # step sets these itself
        assert f"{option.flag} " in text, option.flag
        expected = f"default: {option.shown_default}" if option.dest not in ("shape", "label") else "default"
        if option.dest in launcher:
            assert expected in text
        else:
            assert f"(default: {option.shown_default})" in text, option.flag


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_web_ui_form_has_the_same_defaults(tmp_path):
    port = _free_port()
    log = open(tmp_path / "webui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", "locustfile.py", "--web-host", "127.0.0.1",
                             "--web-port", str(port), "--host", "http://127.0.0.1:9",
                             "--run-dir", str(tmp_path / "run")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, html = time.time() + 30, None
        while time.time() < deadline and html is None:
            try:
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert html, (tmp_path / "webui.log").read_text()[-2000:]
        match = re.search(r"window\.templateArgs = (\{.*?\});?\s*</script>", html, re.S)
        form = json.loads(match.group(1))["extra_options"]
        for option in options.ALL_OPTIONS:
            if not option.web_ui:
                assert option.dest not in form, option.dest
                continue
            assert form[option.dest]["default_value"] == option.default, option.dest
            assert form[option.dest]["help_text"] == option.help_text, option.dest
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
