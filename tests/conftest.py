"""Shared fixtures: real servers started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import servers


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server for the KMS/storage tests (signature enforcement off)."""
    with servers.moto_server() as url:
        yield url
