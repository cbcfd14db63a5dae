"""Fixtures of the deploy tests; ``nginx_gateway`` is meant for other test folders too:

    # tests/<folder>/conftest.py
    from tests.e2e.deploy.conftest import nginx_gateway  # noqa: F401  (makes the fixture available)

    def test_through_the_gateway(nginx_gateway, sim):
        gw = nginx_gateway(sim.url, max_conn=2)        # -> tests.e2e.deploy.gateway.Gateway
        ...                                            # gw.url, gw.access_statuses(), gw.errors()

Without pytest, use the context manager ``tests.e2e.deploy.gateway.start_nginx(upstream_url, folder)``.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.e2e.deploy.gateway import NginxError, nginx_binary, start_nginx


@pytest.fixture
def nginx_gateway(tmp_path_factory):
    """Factory: ``nginx_gateway(upstream_url, max_conn=None, rate=None, burst=None) -> Gateway``.

    Starts Debian's nginx with the repository's gateway/nginx.conf (upstream and listen rewritten) on
    127.0.0.1 and an OS-chosen port, in front of ``upstream_url``; waits until it answers; stops every
    gateway it started at the end of the test. Fails (not skips) when nginx is missing.
    """
    try:
        nginx_binary()
    except NginxError as error:
        pytest.fail(str(error))
    with contextlib.ExitStack() as stack:
        def start(upstream_url: str, **limits):
            folder = tmp_path_factory.mktemp("nginx")
            return stack.enter_context(start_nginx(upstream_url, folder, **limits))

        yield start
