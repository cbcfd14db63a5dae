"""Grows this process's file-descriptor table once, before the load starts, so that no connection waits for it.

Linux doubles a process's descriptor table when a new descriptor does not fit (at 64, 128, 256, 512 …), and in a
process with more than one thread the kernel then waits for an RCU grace period (``expand_fdtable``:
``synchronize_rcu``). Measured here: ``socket()`` took 19-29 ms at descriptors 256 and 512 — in a load
process that is the whole hub stopped while 255 new users connect, and every stream that sends meanwhile
is read late (tests/test_descriptors.py). A table grown once at start-up is never shrunk, so the wait
happens once, before the first user, and never in a step.
"""

from __future__ import annotations

import os

#: the table is grown to the soft RLIMIT_NOFILE, at most this many descriptors (8 bytes each, in the kernel)
MAX_RESERVED = 65536


def reserve(count: int | None = None) -> int:
    """Make room for ``count`` descriptors (default: the soft open-file limit, at most MAX_RESERVED) by placing
    a duplicate at the top of that range and closing it. Returns the count reserved, 0 where it cannot."""
    if count is None:
        try:
            import resource
        except ImportError:  # not a Unix
            return 0
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        count = MAX_RESERVED if soft == resource.RLIM_INFINITY else min(soft, MAX_RESERVED)
    if count < 2:
        return 0
    top = count - 1
    try:
        os.fstat(top)
        return count  # in use: the table is that large already (and the descriptor is someone's)
    except OSError:
        pass
    try:
        source = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return 0
    try:
        os.dup2(source, top)
        os.close(top)
    except OSError:
        return 0
    finally:
        os.close(source)
    return count
