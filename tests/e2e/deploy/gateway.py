"""Run the repository's nginx gateway config (gateway/nginx.conf) with Debian's nginx, for tests.

    with start_nginx("http://127.0.0.1:11434", tmp_path, max_conn=2) as gw:
        httpx.get(gw.url + "/api/tags")
        gw.access_statuses()      # [200, 429, ...] from nginx's access log

The config's ``${...}`` placeholders are filled in the way the nginx image's templates feature does it
(upstream, listen address, limits); nginx listens on 127.0.0.1 on an OS-chosen free port, writes its
pid, error log, access log and temp files under its own folder, and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "gateway" / "nginx.conf"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# Test defaults: limits high enough to stay out of the way unless a test lowers them.
DEFAULT_LIMITS = {"GATEWAY_MAX_CONN": 64, "GATEWAY_RATE": "1000r/s", "GATEWAY_BURST": 1000}


class NginxError(RuntimeError):
    """nginx is missing, rejected the config, or did not answer in time."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        raise NginxError("nginx not found; install Debian's package (apt-get install -y nginx) "
                         "or run bash scripts/test.sh, which does")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream_address(url: str) -> str:
    """'http://127.0.0.1:8123/' -> '127.0.0.1:8123' (the form nginx's upstream `server` wants)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"not an upstream URL: {url!r}")
    return f"{parts.hostname}:{parts.port or 80}"


def render(values: dict[str, object], text: str | None = None) -> str:
    """The config with every ${NAME} replaced; a placeholder without a value is an error."""
    text = CONFIG.read_text() if text is None else text
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise NginxError(f"no value for placeholder(s) {', '.join(missing)} in {CONFIG}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def placeholders(text: str | None = None) -> set[str]:
    return set(PLACEHOLDER.findall(CONFIG.read_text() if text is None else text))


@dataclass
class Gateway:
    url: str
    port: int
    upstream: str
    prefix: Path
    config_path: Path
    access_log: Path
    error_log: Path
    process: subprocess.Popen

    def access_lines(self) -> list[str]:
        return [line for line in self.access_log.read_text(errors="replace").splitlines() if line.strip()]

    def access_statuses(self, path_prefix: str = "") -> list[int]:
        """HTTP statuses nginx logged, optionally only for requests whose path starts with path_prefix."""
        statuses = []
        for line in self.access_lines():
            match = re.search(r'"[A-Z]+ (\S+) [^"]*" (\d{3}) ', line)
            if match and match.group(1).startswith(path_prefix):
                statuses.append(int(match.group(2)))
        return statuses

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""


def _wait_until_up(gw: Gateway, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if gw.process.poll() is not None:
            raise NginxError(f"nginx exited with code {gw.process.returncode}: {gw.errors()[-2000:]}")
        try:
            with urllib.request.urlopen(gw.url + "/gateway/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.05)
    raise NginxError(f"nginx did not answer on {gw.url} within {timeout:g}s ({last}): {gw.errors()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # fast shutdown: streams in flight are closed
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_nginx(upstream_url: str, folder, *, max_conn: int | None = None, rate: str | None = None,
                burst: int | None = None, timeout: float = 10.0, attempts: int = 3):
    """Start nginx with the repository's config in front of ``upstream_url``; yields a :class:`Gateway`.

    ``max_conn`` / ``rate`` / ``burst`` set GATEWAY_MAX_CONN / GATEWAY_RATE / GATEWAY_BURST (defaults:
    high, see DEFAULT_LIMITS). ``folder`` receives the config copy, logs, pid and temp files.
    """
    binary = nginx_binary()
    prefix = Path(folder)
    prefix.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = dict(DEFAULT_LIMITS, OLLAMA_UPSTREAM=upstream_address(upstream_url))
    for name, value in (("GATEWAY_MAX_CONN", max_conn), ("GATEWAY_RATE", rate), ("GATEWAY_BURST", burst)):
        if value is not None:
            values[name] = value
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / sub).mkdir(parents=True, exist_ok=True)
    temp_paths = "".join(f"    {sub}_temp_path {prefix / 'temp' / sub};\n"
                         for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    error = None
    for _ in range(attempts):  # a free port can be taken between choosing it and nginx binding it
        port = free_port()
        text = render(dict(values, GATEWAY_LISTEN=f"127.0.0.1:{port}"))
        # Temp files under the prefix, so nginx needs no write access to /var/lib/nginx.
        text = re.sub(r"^http \{\n", "http {\n" + temp_paths, text, count=1, flags=re.M)
        config_path = prefix / "nginx.conf"
        config_path.write_text(text)
        access_log, error_log = prefix / "access.log", prefix / "error.log"
        for log in (access_log, error_log):
            log.write_text("")
        command = [binary, "-p", str(prefix), "-c", str(config_path), "-e", str(error_log),
                   "-g", f"daemon off; pid {prefix / 'nginx.pid'}; error_log {error_log} info;"]
        process = subprocess.Popen(command, stdout=open(access_log, "ab"), stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        gw = Gateway(f"http://127.0.0.1:{port}", port, values["OLLAMA_UPSTREAM"], prefix, config_path,
                     access_log, error_log, process)
        try:
            _wait_until_up(gw, timeout)
        except NginxError as exc:
            _stop(process)
            error = exc
            if "Address already in use" in str(exc):
                continue
            raise
        try:
            yield gw
        finally:
            _stop(process)
        return
    raise error
