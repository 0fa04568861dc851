"""Shared fixtures: real servers started once per test session; the log capture for the
secret scan (see tests/logscan.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import logscan, servers

# The emulators' session fixtures, shared by every module that uses them (a module importing a
# fixture function itself would get its own instance, and start the emulator again).
from tests.storage.cloud_servers import (  # noqa: F401
    azurite,
    entra,
    fake_gcs_url,
    google_token_server,
    moto_s3_keys,
)

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
