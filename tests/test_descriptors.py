"""The descriptor table grown once (ollama_locust.descriptors): after it, a threaded process opens hundreds of
sockets with no call waiting for the kernel to grow the table (before: 19-29 ms at descriptors 256 and 512).

A wait is told by the thread going to sleep inside ``socket()`` (a voluntary context switch, getrusage), not
by a duration: a loaded machine also takes the CPU away, and that is an involuntary switch."""

import os
import subprocess
import sys

CHECK = """
import resource, socket, sys, threading, time
threading.Thread(target=time.sleep, args=(20,), daemon=True).start()  # threaded, as every load process is
if sys.argv[1] == "reserve":
    from ollama_locust import descriptors
    assert descriptors.reserve(2048) == 2048
sockets, slept = [], 0
for _ in range(1100):
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    sockets.append(socket.socket())
    slept += resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw > before
print(slept)
"""


def sockets_that_slept(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout)


def test_after_reserve_no_socket_call_waits_for_the_table():
    # without it the calls that grow the table (to 512, 1024, 2048 entries) sleep until an RCU grace period ends
    assert sockets_that_slept("none") >= 1
    assert sockets_that_slept("reserve") == 0


def test_reserve_keeps_descriptors_that_are_in_use():
    read_end, write_end = os.pipe()
    try:
        from ollama_locust import descriptors

        assert descriptors.reserve(write_end + 1) == write_end + 1  # the top one is in use: left alone
        os.write(write_end, b"x")
        assert os.read(read_end, 1) == b"x"
        assert descriptors.reserve(1) == 0
    finally:
        os.close(read_end)
        os.close(write_end)
