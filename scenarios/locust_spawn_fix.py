"""Keeps a Locust worker's hub free while it takes a spawn message from the master.

Locust's ``WorkerRunner`` (2.47.0, ``runners.py``, the "spawn" branch of ``worker``) picks the master's
custom options out of ``parsed_options`` with ``k not in argument_parser.default_args_dict()`` — which
builds and parses Locust's whole argument parser once *per option*. With this project's options that is
about 110 parsers, 150-240 ms of a blocked hub at every user-count change, on every worker: streams in
flight are read that much late and the hub-lag check rightly calls the step's numbers not the server's
(measured: 1-3 ms of hub lag between changes, 130-220 ms in the second of each change; see
tests/scenarios/test_locust_spawn_fix.py).

The defaults of Locust's own parser do not change while a process runs, so :func:`apply` computes them
once and hands out a copy each call. Its one other caller, ``ui_extra_args_dict`` (the web UI's form),
wants the same defaults.
"""

from __future__ import annotations

import functools

from locust import argument_parser

_built_each_call = argument_parser.default_args_dict


@functools.cache
def _defaults() -> dict:
    return _built_each_call()


def _cached_defaults() -> dict:
    return dict(_defaults())


def apply() -> None:
    """Install the cached defaults (idempotent)."""
    argument_parser.default_args_dict = _cached_defaults
