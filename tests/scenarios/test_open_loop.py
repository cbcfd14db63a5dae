"""The open-loop driver's cases (``open_loop_cases.py``) run in a pytest process of their own: the driver runs
under Locust, and importing Locust monkey-patches the whole process (threads become greenlets), which would
hang every later test that runs the simulator in a thread."""

import os
import subprocess
import sys

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "open_loop_cases.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(CASES)))


def test_open_loop_cases_in_their_own_process():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", CASES],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    print(result.stdout.strip().splitlines()[-1])
