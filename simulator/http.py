"""A small HTTP/1.1 server protocol on asyncio: one Protocol per connection, no thread per connection.

It parses requests (Content-Length or chunked bodies, keep-alive, one request at a time per
connection) and hands each to ``handler(request, conn)`` as a task. ``Conn`` writes whole responses
or chunked streams whose headers go out only with the first chunk, as Go's net/http does for Ollama.
On disconnect the running handler task is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from email.utils import formatdate
from typing import Awaitable, Callable

from ollama_locust import receive_stamps
from ollama_locust.simulator.listener import ArrivalWatch

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Request Entity Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
MAX_HEADER = 64 * 1024
MAX_BODY = 64 * 1024 * 1024

_date_cache = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


class Request:
    __slots__ = ("method", "path", "query", "version", "headers", "body", "keep_alive", "arrived")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes,
                 arrived: float = 0.0):
        self.arrived = arrived  # time.monotonic() when its first bytes were read
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.version = version
        self.headers = headers
        self.body = body
        conn = headers.get("connection", "").lower()
        self.keep_alive = (version == "HTTP/1.1" and "close" not in conn) or "keep-alive" in conn


class BadRequest(Exception):
    pass


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("malformed header")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body beginning at ``start``; (body, end offset) or None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)  # no trailers supported beyond an empty line
            return (bytes(out), end + 2) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2
        if len(out) > MAX_BODY:
            raise BadRequest("body too large")


Handler = Callable[[Request, "Conn"], Awaitable[None]]


class Conn(asyncio.Protocol):
    """One client connection."""

    def __init__(self, handler: Handler, on_open=None, on_close=None, arrived: float = 0.0):
        self.handler = handler
        self.on_open, self.on_close = on_open, on_close
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # time.monotonic() when the bytes at the head of buf arrived; 0: none yet. A new connection's comes
        # from the listener (simulator/listener.py: the kernel's stamp of its first request)
        self.buf_since = arrived
        self.task: asyncio.Task | None = None
        self.closed = False
        self.close_after = False
        self.peer_local = True
        self.sockname = None
        self.fd = -1  # the socket's descriptor, for the direct write of a token
        self.stamped = False  # the kernel stamps what this socket receives (receive_stamps.enable)
        self.watch: ArrivalWatch | None = None  # waits for a kept-alive connection's next request (see _watch)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.fd = sock.fileno()
            except (OSError, AttributeError):
                pass
            self.stamped = receive_stamps.enable(sock)
        self.sockname = transport.get_extra_info("sockname")
        if self.on_open:
            self.on_open(self)

    def _watch(self) -> None:
        """Date the next request on a kept-alive connection by when its bytes reach the machine, not when a
        busy loop reads them (a new connection's first request is dated by the listener).

        uvloop's transport hands over bytes without their kernel stamps, and a loop busy with a flood of
        new connections or a decode step reads a request late (seen: 5 ms for 20 requests at once). So an
        idle connection stops its transport's reading and watches a duplicate of its descriptor instead
        (:class:`listener.ArrivalWatch`, as the listener does for a new one):
        when bytes arrive, a peek takes their stamp (:func:`receive_stamps.waiting_since`), and the
        transport reads them as before."""
        if not self.stamped or self.closed or self.watch is not None:
            return
        try:
            self.watch = ArrivalWatch(asyncio.get_running_loop(), self.fd, self._bytes_came)
        except (OSError, RuntimeError, ValueError):
            return
        self.transport.pause_reading()

    def _bytes_came(self, arrived: float) -> None:
        self.watch = None
        if not self.buf:
            self.buf_since = arrived  # 0.0: an EOF, or no stamp
        if not self.closed:
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.on_close:
            self.on_close(self)

    def data_received(self, data: bytes) -> None:
        if not self.buf:
            # A request arrives when its first bytes are read (or, waiting at the accept, reached the
            # machine), not when its handler task first runs (a later turn of the event loop): the
            # truth log's TTFT starts here.
            self.buf_since = self.buf_since or time.monotonic()
        self.buf += data
        if self.task is None:
            self._next_request()

    def eof_received(self):
        return None  # close our side too

    # -- request parsing -----------------------------------------------------------------------
    def _next_request(self) -> None:
        if self.closed or not self.buf:
            return
        try:
            req = self._parse()
        except BadRequest:
            self.send(400, b"400 Bad Request", b"text/plain; charset=utf-8")
            self.transport.close()
            return
        if req is None:
            return
        self.close_after = not req.keep_alive
        self.task = asyncio.get_running_loop().create_task(self.handler(req, self))
        self.task.add_done_callback(self._done)

    def _parse(self) -> Request | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER:
                raise BadRequest("header too large")
            return None
        method, target, version, headers = _parse_head(bytes(buf[:end]))
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            got = _dechunk(buf, start)
            if got is None:
                return None
            body, stop = got
        else:
            try:
                length = int(headers.get("content-length", "0") or 0)
            except ValueError:
                raise BadRequest("bad content-length") from None
            if length < 0 or length > MAX_BODY:
                raise BadRequest("bad content-length")
            if len(buf) < start + length:
                return None
            body, stop = bytes(buf[start:start + length]), start + length
        del buf[:stop]
        # a pipelined next request was read now; with nothing left, the next bytes date the next one
        arrived, self.buf_since = self.buf_since, (time.monotonic() if buf else 0.0)
        return Request(method, target, version, headers, body, arrived)

    def _done(self, task: asyncio.Task) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None and not self.closed:
            self.abort()  # a bug in a handler: never leave the client hanging
            return
        if self.close_after and not self.closed:
            self.transport.close()
        elif not self.closed:
            self._next_request()
            if self.task is None and not self.buf:
                self._watch()

    # -- responses -----------------------------------------------------------------------------
    @staticmethod
    def head_bytes(status: int, content_type: bytes, length: int | None, extra: bytes = b"") -> bytes:
        framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
        return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nDate: %s\r\n%s%s\r\n"
                % (status, REASONS.get(status, "Unknown").encode(), content_type, http_date(), extra, framing))

    def send(self, status: int, body: bytes, content_type: bytes = b"application/json; charset=utf-8",
             head_only: bool = False, extra: bytes = b"") -> None:
        """A complete response with Content-Length."""
        if self.closed:
            return
        self.transport.write(self.head_bytes(status, content_type, len(body), extra) + (b"" if head_only else body))

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        transport = self.transport
        if self.fd >= 0 and not transport.get_write_buffer_size():
            # Nothing queued in the transport: one write(2) straight to the socket, ~1/3 cheaper than
            # going through uvloop's transport (a decode step writes one token to every stream in a
            # row, so this is what sets how late the last stream's token goes out). Whatever the
            # kernel does not take, and any error, goes to the transport, which queues or reports it.
            try:
                sent = os.write(self.fd, data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def abort(self) -> None:
        """Drop the connection at once (RST), as a crashed server would."""
        if not self.closed and self.transport is not None:
            self.transport.abort()
            self.closed = True


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
