"""A worker takes a spawn message without building Locust's argument parser once per option
(ollama_locust.scenarios.locust_spawn_fix). Before the fix a worker's hub lag was 1-3 ms between user-count
changes and 130-220 ms in the second of each change (py-spy: WorkerRunner.worker -> default_args_dict).

The check runs in a Python process of its own: importing Locust monkey-patches the process it runs in."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHECK = """
import warnings
warnings.simplefilter("ignore")
from locust import argument_parser
built = []
original_setup = argument_parser.setup_parser_arguments
argument_parser.setup_parser_arguments = lambda parser: built.append(1) or original_setup(parser)
expected = argument_parser.default_args_dict()
assert len(built) == 1, built

import ollama_locust.scenarios.locustfile  # register(events) at import applies the fix
from ollama_locust.scenarios import locust_spawn_fix
assert argument_parser.default_args_dict is locust_spawn_fix._cached_defaults

parsed_options = {**expected, **{f"custom_{i}": i for i in range(110)}}
custom = {k: v for k, v in parsed_options.items() if k not in argument_parser.default_args_dict()}  # Locust's line
assert len(built) == 2, len(built)  # one parser for all the keys, not one per key
assert custom == {f"custom_{i}": i for i in range(110)}
assert argument_parser.default_args_dict() == expected
argument_parser.default_args_dict()["host"] = "changed"  # a caller's change stays the caller's
assert argument_parser.default_args_dict() == expected
print("ok")
"""


def test_the_defaults_are_built_once_and_are_locusts_own():
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", (result.stdout + result.stderr)[-3000:]
