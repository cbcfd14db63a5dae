"""A small HTTP/1.1 transport for streaming replies under gevent: one keep-alive connection per user.

Why not Locust's HttpUser/FastHttpUser, requests or httpx (measured, see docs/load-model.md): Locust's
timer stops at the headers; FastHttpUser's ``iter_content``/``iter_lines`` wait for a whole block and
report TTFT late; httpx under gevent costs about 3x the CPU per line. This transport writes the request
itself and parses the response with geventhttpclient's C parser (llhttp, which also undoes chunked
transfer encoding), reading up to 64 KiB per ``recv``: every line already in the socket buffer costs no
extra syscall, and a line is seen the moment its bytes arrive. It has no timeouts of its own besides
the connect timeout: the caller bounds a whole request with ``gevent.Timeout`` (first token, total).

Errors are mapped here, at the boundary, to :class:`TransportError` with ``before_status`` telling
whether a status line had arrived (``http_error``) or not yet (a dropped stream is a ``stream_error``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket as _stdlib_socket
import time
from urllib.parse import urlsplit

import gevent
import gevent.socket
import gevent.ssl
from geventhttpclient._parser import HTTPParseError
from geventhttpclient.response import HTTPResponse

from ollama_locust import receive_stamps

RECV_SIZE = 65536
MAX_HEADER_BYTES = 64 * 1024  # a status line and headers longer than this: an http_error (memory stays bounded)

DEFAULT_CONNECT_TIMEOUT = 10.0


class TransportError(Exception):
    """The connection failed. ``before_status``: no HTTP status had arrived yet."""

    def __init__(self, message: str, before_status: bool = True):
        super().__init__(message)
        self.before_status = before_status


class _Parser(HTTPResponse):
    """geventhttpclient's response parser, with the decoded body collected in ``body``."""

    def __init__(self, method: str):
        super().__init__(method=method)
        self.body = bytearray()

    def _on_body(self, buf) -> None:  # called by the C parser for every piece of decoded body
        self.body += buf


class Response:
    """A response whose headers have arrived; the body is read piece by piece with :meth:`read`."""

    __slots__ = ("status", "headers", "arrived", "_conn", "_sock", "_parser", "_eof", "_stamped")

    def __init__(self, conn: "Connection", sock, parser: _Parser, arrived: float):
        self._conn = conn
        self._sock = sock
        self._parser = parser
        self._eof = False
        self._stamped = conn._stamped
        #: perf_counter time at which the bytes returned by the last read() reached this machine:
        #: the kernel's receive timestamp (SO_TIMESTAMPNS) when available, else when read() got them.
        #: It starts as the arrival of the packet that completed the headers: a streaming server
        #: sends its first token in that same packet.
        self.arrived = arrived
        self.status = parser.get_code()
        self.headers = {key.lower(): value for key, value in parser.items()}

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type", "")
        return value.split(";", 1)[0].strip().lower() if isinstance(value, str) else ""

    @property
    def complete(self) -> bool:
        """The whole HTTP message has been received."""
        return self._parser.message_complete

    def read(self) -> bytes:
        """The next piece of decoded body (whatever is there, at most one recv); b'' at the end.

        Raises :class:`TransportError` (``before_status=False``) when the connection drops before the
        message is complete.
        """
        parser = self._parser
        body = parser.body
        empty = 0
        while not body:
            if parser.message_complete or self._eof:
                return b""
            empty += 1
            if empty % 8 == 0:  # bytes that decode to no body (chunk framing, trailers) keep coming
                gevent.sleep(0)
            try:
                data, self.arrived = _recv(self._sock, self._stamped, self.arrived)
            except OSError as exc:
                self._conn.close()
                raise TransportError(f"connection lost mid-reply ({_describe(exc)})", before_status=False) from None
            try:
                if data:
                    parser.feed(data)
                else:
                    self._eof = True
                    try:
                        parser.feed(b"")  # EOF: completes a reply delimited by the connection's end
                    except HTTPParseError:
                        pass
                    if not parser.message_complete:
                        self._conn.close()
                        raise TransportError("connection closed mid-reply", before_status=False)
            except HTTPParseError as exc:
                self._conn.close()
                raise TransportError(f"malformed HTTP response body ({exc})", before_status=False) from None
        data = bytes(body)
        del body[:]
        return data

    def read_all(self, limit: int) -> bytes:
        """The rest of the body, at most ``limit`` bytes (the connection is dropped beyond that)."""
        parts = []
        size = 0
        while True:
            data = self.read()
            if not data:
                return b"".join(parts)
            parts.append(data)
            size += len(data)
            if size > limit:
                self.abandon()
                return b"".join(parts)[:limit]

    def release(self) -> None:
        """Done with the reply: keep the connection for the next request when the message is complete."""
        parser = self._parser
        if parser.message_complete and not self._eof and parser.should_keep_alive() and not parser.body:
            self._conn._sock_idle(self._sock)
        else:
            self._conn.close()

    def abandon(self) -> None:
        """Stop reading: the connection cannot be reused."""
        self._conn.close()


class Connection:
    """One keep-alive HTTP/1.1 connection to ``base_url`` (reconnects when it was closed)."""

    def __init__(self, base_url: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, kernel_timestamps: bool = True):
        parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme '{parts.scheme}' in {base_url!r}; use http:// or https://")
        if not parts.hostname:
            raise ValueError(f"no host in URL {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.kernel_timestamps = kernel_timestamps
        self._stamped = False
        self._sock = None
        #: Of the last :meth:`request`: perf_counter time its bytes were written (None: never written),
        #: and how long opening a new connection took before that (None: a kept-alive one was reused).
        self.sent_at: float | None = None
        self.connect_ms: float | None = None
        try:
            self._family = _stdlib_socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else _stdlib_socket.AF_INET
        except ValueError:
            self._family = None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _sock_idle(self, sock) -> None:
        self._sock = sock

    def _connect(self):
        try:
            if self._family is not None:  # an IP literal: no resolver round trip (gevent's runs in a thread)
                sock = gevent.socket.socket(self._family, _stdlib_socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                try:
                    sock.connect((self.host, self.port))
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = gevent.socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except _stdlib_socket.timeout:
            raise TransportError(f"connect to {self.host}:{self.port} timed out after {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port} ({_describe(exc)})") from None
        sock.settimeout(None)  # the caller's gevent.Timeout bounds the request
        try:
            sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._stamped = self.scheme == "http" and self.kernel_timestamps and receive_stamps.enable(sock)
        if self.scheme == "https":
            context = gevent.ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=self.host)
            except OSError as exc:
                sock.close()
                raise TransportError(f"TLS handshake with {self.host}:{self.port} failed ({_describe(exc)})") from None
        return sock

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Response:
        """Send a request and wait for the response headers.

        A reused keep-alive connection that turns out to be closed by the server before any byte of
        the response is retried once on a fresh connection (the server never saw the request).
        ``sent_at`` and ``connect_ms`` tell when the bytes went out and what the connect cost: a
        request's clock starts at the write, not before the connect (nor before the hub served the
        other greenlets that ran while this one waited for its connect).
        """
        self.sent_at = self.connect_ms = None
        head = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}",
                f"Content-Length: {len(body)}"]
        if headers:
            head.extend(f"{key}: {value}" for key, value in headers.items())
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (0, 1):
            reused = self._sock is not None
            if reused:
                sock = self._sock
            else:
                began = time.perf_counter()
                sock = self._connect()
                self.connect_ms = (time.perf_counter() - began) * 1000.0
            self._sock = None  # owned by the response until released
            try:
                return self._exchange(sock, raw, method)
            except _StaleConnection:
                if reused and attempt == 0:
                    continue
                raise TransportError("connection closed by the server before a response") from None
        raise AssertionError("unreachable")

    def _exchange(self, sock, raw: bytes, method: str) -> Response:
        parser = _Parser(method)
        got_bytes = False
        head_bytes = 0
        try:
            self.sent_at = time.perf_counter()
            sock.sendall(raw)
            stamped = self._stamped
            arrived = self.sent_at
            while not parser.headers_complete or parser.get_code() < 200:
                data, arrived = _recv(sock, stamped, arrived)
                if not data:
                    if not got_bytes:
                        raise _StaleConnection()
                    raise TransportError("connection closed before the end of the response headers")
                got_bytes = True
                head_bytes += len(data)
                if head_bytes > MAX_HEADER_BYTES and not parser.headers_complete:
                    raise TransportError(f"response headers longer than {MAX_HEADER_BYTES} bytes")
                parser.feed(data)
                if head_bytes > RECV_SIZE:
                    gevent.sleep(0)  # headers that keep coming must not keep the hub (and the timeouts) from running
        except _StaleConnection:
            _close(sock)
            raise
        except HTTPParseError as exc:
            _close(sock)
            raise TransportError(f"malformed HTTP response ({exc})") from None
        except OSError as exc:
            _close(sock)
            if not got_bytes and exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise _StaleConnection() from None
            raise TransportError(f"connection failed before a response ({_describe(exc)})") from None
        except BaseException:
            _close(sock)
            raise
        self._sock = sock  # so that close() reaches it while the response is being read
        return Response(self, sock, parser, arrived)


class _StaleConnection(Exception):
    pass


def _recv(sock, stamped: bool, floor: float) -> tuple[bytes, float]:
    """One recv: the bytes and the perf_counter time they reached this machine.

    With ``stamped`` (SO_TIMESTAMPNS on the socket) that is the kernel's receive timestamp of the
    packet, so a load generator that is busy elsewhere does not make the server look slow. A stamp
    earlier than ``floor`` (the request's write, or the arrival of the bytes read before) is not
    believed: those bytes are dated by the read. Its limit: packets that queue up unread are merged by
    the kernel (``tcp_try_coalesce``) and carry the newest one's stamp, so bytes read after the hub was
    blocked for N ms are dated up to N ms late — even a peek at the first queued byte (tried) says the
    same. Keeping the hub free (no long synchronous work per user) is the remedy.
    """
    if not stamped:
        data = sock.recv(RECV_SIZE)
        return data, time.perf_counter()
    data, ancillary, _flags, _addr = sock.recvmsg(RECV_SIZE, receive_stamps.CMSG_SPACE)
    now = time.perf_counter()
    age = receive_stamps.age_of(ancillary, receive_stamps.kernel_time())
    if age is None or now - age < floor:
        return data, now
    return data, now - age


def _close(sock) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _describe(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        name = {errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset",
                errno.EPIPE: "broken pipe", errno.EHOSTUNREACH: "host unreachable",
                errno.ENETUNREACH: "network unreachable"}.get(exc.errno)
        if name:
            return name
    if isinstance(exc, _stdlib_socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    return exc.strerror or str(exc) or type(exc).__name__
