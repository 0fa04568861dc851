"""Shared fixtures: real servers started once per test session; the ``emulator`` marker; the
hypothesis profiles; the log capture and end-of-run secret scan (see tests/logscan.py).

Lanes: ``scripts/test`` runs everything; ``scripts/test --fast`` runs
``-m "not emulator and not interop and not slow"``. A test is ``emulator`` when it starts a
server or program of another project (moto, Azurite, fake-gcs-server, OpenBao, SoftHSM,
PyKMIP, Redis, nginx, rclone, s3cmd, the AWS CLI): :func:`pytest_collection_modifyitems` marks
every test that uses one of :data:`EMULATOR_FIXTURES`, directly or through another fixture; a
test that starts one without such a fixture carries the marker itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

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

# Every fixture that starts an emulator; a fixture built on one (``aws``, ``matrix``,
# ``moto_s3_keys``, ...) needs no entry: ``item.fixturenames`` is the closure of what a test uses.
EMULATOR_FIXTURES = frozenset(
    {
        "moto_url",  # moto_server (tests/conftest.py)
        "moto_auth",  # moto_server enforcing SigV4 (tests/conftest.py)
        "moto_enforcing",  # its own moto_server (tests/signers/test_aws_interop.py)
        "azurite",  # Azurite on node (tests/storage/cloud_servers.py)
        "fake_gcs_url",  # fake-gcs-server (tests/storage/cloud_servers.py)
        "redis_url",  # redis-server (tests/replay_servers.py)
        "bao",  # OpenBao (tests/kms/test_vault.py)
        "hsm",  # SoftHSM tokens (tests/kms/test_pkcs11.py)
        "kmip",  # pykmip-server (tests/kms/test_kmip.py)
    }
)

# Hypothesis: profiles set the defaults; a test's own @settings(...) still wins for what it sets.
# scripts/test picks ``ci`` (more examples, the same ones every run, nothing stored between
# runs); ``scripts/test --fast`` and plain pytest pick ``fast``.
settings.register_profile(
    "ci", max_examples=200, derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile("fast", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(logscan):  # (unless given as -p tests.logscan)
        config.pluginmanager.register(logscan, "tests.logscan")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EMULATOR_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulator)


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
