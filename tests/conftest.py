"""Shared fixtures: real servers started once per test session; the log capture for the
secret scan (see tests/logscan.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import logscan, servers

logscan.install_root_handler()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server for the KMS/storage tests (signature enforcement off)."""
    with servers.moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def moto_auth() -> Iterator[tuple[str, str, str]]:
    """A moto server enforcing SigV4: (url, real access key id, real secret key)."""
    with servers.moto_enforcing() as (url, ak, sk):
        logscan.register(sk)
        yield url, ak, sk
