"""The simulator's listening sockets, accepted here rather than by the event loop's server, so that every
connection's first request is dated by when its bytes reached the machine (the kernel's receive stamp).

uvloop's server starts reading a new connection as soon as its protocol's ``connection_made`` returns —
a ``pause_reading`` there is a no-op — and its transport hands over bytes without their stamps. A first
request that arrives just after the accept was then dated by the loop's read, late by whatever the loop
was busy with (seen: 6.8 ms in a flood of 255 new users). Here a new connection whose request is not
there yet is watched through a duplicate of its descriptor (the original is the transport's, later);
when bytes or an EOF arrive, a peek takes their stamp and the connection goes to the loop
(``connect_accepted_socket``) with that arrival. A connection whose request already waits (a flood
accepted late) is handed over at once, with the waiting bytes' stamp.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Callable

from ollama_locust import receive_stamps

logger = logging.getLogger(__name__)

ACCEPTS_PER_WAKE = 256  # connections accepted per readiness of a listening socket (then the loop runs on)
OUT_OF_DESCRIPTORS_PAUSE_S = 1.0  # EMFILE/ENFILE: stop accepting this long (the backlog keeps the rest)


class ArrivalWatch:
    """Waits for the next bytes (or an EOF) on socket ``fd`` through a duplicate of it, so that the event
    loop's transport, which owns ``fd``, does not read them first; then calls ``then(arrived)`` with their
    kernel stamp (time.monotonic(); 0.0 without one) and leaves the bytes for the transport. ``cancel()``
    stops it. OSError when the duplicate cannot be made."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, then: Callable[[float], None]):
        self.loop, self.then = loop, then
        self.fd = os.dup(fd)
        try:
            loop.add_reader(self.fd, self._ready)
        except BaseException:
            os.close(self.fd)
            raise

    def _ready(self) -> None:
        arrived = receive_stamps.waiting_since(self.fd) or 0.0
        self.cancel()
        self.then(arrived)

    def cancel(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                self.loop.remove_reader(fd)
            except RuntimeError:  # the loop is closing
                pass
            os.close(fd)


class StampedListener:
    """Accepts on ``cfg``'s address and gives each connection to ``factory(arrived)`` (``arrived``: when its
    first request's bytes reached the machine as time.monotonic(), 0.0 when the kernel stamped none)."""

    def __init__(self, factory: Callable[[float], asyncio.Protocol], host: str, port: int, backlog: int = 4096):
        self.factory = factory
        self.loop = asyncio.get_running_loop()
        self.sockets = _bind(host, port, backlog)
        self.waiting: dict[ArrivalWatch, socket.socket] = {}  # accepted sockets whose first request has not come
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        # accepted sockets inherit it: stamped from their first packet (a list, not a generator: every
        # listening socket is asked, also after one that could not be stamped)
        self.stamped = all([receive_stamps.enable(sock) for sock in self.sockets])
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("out of descriptors (%s): not accepting for %.0f s", error,
                                   OUT_OF_DESCRIPTORS_PAUSE_S)
                    self.loop.remove_reader(listener.fileno())
                    self.loop.call_later(OUT_OF_DESCRIPTORS_PAUSE_S, self._resume, listener)
                return  # ECONNABORTED and the like: that one client is gone
            conn.setblocking(False)
            arrived = receive_stamps.waiting_since(conn.fileno())
            if arrived is not None or not self.stamped:
                self._hand_over(conn, arrived or 0.0)
            else:
                self._watch(conn)

    def _resume(self, listener: socket.socket) -> None:
        if not self.closed:
            self.loop.add_reader(listener.fileno(), self._accept, listener)

    def _watch(self, conn: socket.socket) -> None:
        try:
            watch = ArrivalWatch(self.loop, conn.fileno(), lambda arrived: self._first_bytes(watch, conn, arrived))
        except OSError:
            self._hand_over(conn, 0.0)
            return
        self.waiting[watch] = conn

    def _first_bytes(self, watch: ArrivalWatch, conn: socket.socket, arrived: float) -> None:
        if self.waiting.pop(watch, None) is not None:  # (an EOF: handed over too, the transport then sees it)
            self._hand_over(conn, arrived)

    def _hand_over(self, conn: socket.socket, arrived: float) -> None:
        if self.closed:
            conn.close()
            return
        task = self.loop.create_task(self._connect(conn, arrived))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket, arrived: float) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: self.factory(arrived), conn)
        except OSError:  # the client left before its transport was made
            conn.close()

    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop accepting; connections not yet handed over are closed (those handed over are the caller's)."""
        self.closed = True
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        for watch, conn in list(self.waiting.items()):
            watch.cancel()
            conn.close()
        self.waiting.clear()
        for task in list(self.tasks):
            task.cancel()


def _bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (as asyncio's create_server binds); with
    port 0, the first one's port for all of them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = port or sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
