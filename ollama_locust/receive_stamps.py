"""Kernel receive timestamps (Linux ``SO_TIMESTAMPNS``): when bytes reached this machine, not when a busy
process got round to reading them.

Two readers use them: the load side's transport dates every read of a reply by them (a load generator busy
with a thousand streams adds none of its own queueing to TTFT and E2E), and the simulator dates a request
that was already waiting when its connection was accepted (a flood of new connections read late still
arrives, in the truth log, when it reached the server). Elsewhere, or where the kernel stamps nothing,
every function says None and the caller takes its own clock.

Their limit: packets that queue up unread are merged by the kernel (``tcp_try_coalesce``) and carry the
newest one's stamp, so a stream read N ms late is dated up to N ms late. A request is one write that
nothing follows until it is answered, so its stamp is exact.
"""

from __future__ import annotations

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


MAX_AGE_S = 60.0  # a stamp older than this, or in the future, is not believed (a clock step, no stamp)


def age_of(ancillary, now_unix: float) -> float | None:
    """How many seconds before ``now_unix`` the bytes of a ``recvmsg`` reached the machine, by the receive
    stamp in its ancillary list; None without a plausible one (none, 0 = not stamped, in the future, or
    older than MAX_AGE_S)."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(value)
            if seconds or nanos:
                age = now_unix - (seconds + nanos * 1e-9)
                return age if 0.0 <= age < MAX_AGE_S else None
    return None


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
    age = age_of(ancillary, time.time())
    return None if age is None else time.monotonic() - age
