"""Kernel receive timestamps (Linux ``SO_TIMESTAMPNS``): when bytes reached this machine, not when a busy
process got round to reading them.

Two readers use them: the load side's transport dates every read of a reply by them (a load generator busy
with a thousand streams adds none of its own queueing to TTFT and E2E), and the simulator dates every
request by a peek at its first bytes (``simulator/listener.py`` for a new connection, ``http.Conn._watch``
for a kept-alive one), so that a flood read late still arrives, in the truth log, when it reached the
server. Elsewhere, or where the kernel stamps nothing,
every function says None and the caller takes its own clock.

Their limit: packets that queue up unread are merged by the kernel (``tcp_try_coalesce``) and carry the
newest one's stamp, so a stream read N ms late is dated up to N ms late. A request is one write that
nothing follows until it is answered, so its stamp is exact. And Linux switches stamping on for the whole
machine when the first socket asks for it, from a kernel worker that runs a little later
(``net_enable_timestamp``): the first packets a process receives, on a machine where no socket was stamped
yet, can come unstamped and are dated by their read.

The stamps are on the kernel's wall clock. A process whose own wall clock is shifted (libfaketime, as the
tests shift a worker's clock) would read every stamp as that much older or newer, so ages are taken
against :func:`kernel_time`, not ``time.time()``.
"""

from __future__ import annotations

import functools
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else 0)
_TIMESPEC = struct.Struct("@qq")
#: the ancillary buffer one stamp needs (0: this platform has none)
CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if SO_TIMESTAMPNS and hasattr(socket, "CMSG_SPACE") else 0


def enable(sock) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; False where it cannot."""
    if not CMSG_SPACE:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except (OSError, AttributeError):
        return False
    return True


def kernel_time() -> float:
    """Now on the clock the kernel stamps with, in seconds since the epoch: ``time.time()`` less this
    process's :func:`clock_shift`."""
    return time.time() - clock_shift()


@functools.cache
def clock_shift() -> float:
    """How far this process's ``time.time()`` runs ahead of the kernel's receive stamps (0.0 but where the
    process's clock is faked, or where nothing is stamped), measured once: the smallest of three
    differences between a datagram's stamp and ``time.time()`` read just after receiving it."""
    if not CMSG_SPACE:
        return 0.0
    best = None
    try:
        sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return 0.0
    try:
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for _ in range(3):
            sender.send(b"x")
            _data, ancillary, _flags, _addr = receiver.recvmsg(1, CMSG_SPACE)
            now = time.time()
            stamp = _stamp(ancillary)
            if stamp is not None and (best is None or now - stamp < best):
                best = now - stamp
    except OSError:
        return 0.0
    finally:
        sender.close()
        receiver.close()
    return 0.0 if best is None or abs(best) < 0.001 else best


def _stamp(ancillary) -> float | None:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(value)
            if seconds or nanos:
                return seconds + nanos * 1e-9
    return None


MAX_AGE_S = 60.0  # a stamp older than this, or in the future, is not believed (a clock step, no stamp)


def age_of(ancillary, now_unix: float) -> float | None:
    """How many seconds before ``now_unix`` (on :func:`kernel_time`) the bytes of a ``recvmsg`` reached the
    machine, by the receive stamp in its ancillary list; None without a plausible one (none, 0 = not
    stamped, in the future, or older than MAX_AGE_S)."""
    stamp = _stamp(ancillary)
    if stamp is None:
        return None
    age = now_unix - stamp
    return age if 0.0 <= age < MAX_AGE_S else None


def waiting_since(fd: int) -> float | None:
    """When the oldest bytes waiting unread on socket ``fd`` reached the machine, as time.monotonic();
    None when nothing waits, the socket is not stamped (:func:`enable`), or the stamp is not plausible.

    A peek: the bytes stay for whoever reads the socket (an event loop that owns it)."""
    if not CMSG_SPACE or fd < 0:
        return None
    sock = socket.socket(fileno=fd)
    try:
        _data, ancillary, _flags, _addr = sock.recvmsg(1, CMSG_SPACE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing waiting (EAGAIN), or a socket that cannot be peeked
        return None
    finally:
        sock.detach()  # the descriptor stays its owner's
    age = age_of(ancillary, kernel_time())
    return None if age is None else time.monotonic() - age
