"""Key-service fixtures: one keybroker per test module (local KEK, file storage, audit on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keyservice.helpers import KeyBroker, keybroker


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyBroker]:
    with keybroker(tmp_path_factory.mktemp("keyservice")) as running:
        yield running


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path
