"""SyncKMS: blocking calls from plain threads onto one private event loop."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keybroker.kms import ExternalKMS, LocalKeyWrapper
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.storage.file import FileStorage
from keybroker.kms.sync import SyncKMS

ZERO = base64.urlsafe_b64encode(bytes(32)).decode()
KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()  # Constellation's third vector
SALT = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()


def test_cluster_from_uris() -> None:
    with SyncKMS.from_uris(kms_uri=f"kms://cluster-kms?key={KEY}&salt={SALT}") as kms:
        dek = kms.get_dek("key-clusterID", 32)
    assert dek.hex() == "128c164378fe8767f998fbdfe4b4d6463ec5ae1b664ea5999bc27417607ae9b6"


def test_from_uris_error() -> None:
    with pytest.raises(KMSConfigError, match=r"missing parameter\(s\): salt"):
        SyncKMS.from_uris(kms_uri=f"kms://cluster-kms?key={ZERO}")


def test_threads_share_one_dek(tmp_path: Path) -> None:
    sync = SyncKMS(ExternalKMS(LocalKeyWrapper(bytes(32)), FileStorage(tmp_path)))
    with ThreadPoolExecutor(8) as pool:
        deks = list(pool.map(lambda _: sync.get_dek("shared", 32), range(32)))
    assert len(set(deks)) == 1
    with pytest.raises(IntegrityError, match="not the requested 16"):
        sync.get_dek("shared", 16)
    sync.close()


def test_close_is_idempotent_and_stops_the_thread() -> None:
    sync = SyncKMS.from_uris(kms_uri=f"kms://cluster-kms?key={KEY}&salt={SALT}")
    (loop_thread,) = [t for t in threading.enumerate() if t.name == "keybroker-kms"]
    assert loop_thread.daemon and loop_thread.is_alive()
    sync.close()
    sync.close()
    assert not loop_thread.is_alive()
    assert [t for t in threading.enumerate() if t.name == "keybroker-kms"] == []
    with pytest.raises(RuntimeError, match="closed"):
        sync.get_dek("x", 32)


def test_errors_propagate_unchanged() -> None:
    with (
        SyncKMS.from_uris(kms_uri=f"kms://cluster-kms?key={KEY}&salt={SALT}") as kms,
        pytest.raises(ValueError, match="DEK size must be at least 1 byte"),
    ):
        kms.get_dek("x", 0)
