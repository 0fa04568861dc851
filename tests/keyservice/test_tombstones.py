"""Deleting a key leaves a tombstone in storage: later gets are refused with 409 (also after a
restart, and for caller-held blobs) until ``recreate=true`` makes a new key."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.keyservice.helpers import error_code, keybroker, local_kms


def test_delete_tombstones_survive_a_restart_and_recreate_makes_a_new_key(tmp_path: Path) -> None:
    kms_uri, storage_uri = local_kms(tmp_path)
    with keybroker(tmp_path / "one", kms_uri=kms_uri, storage_uri=storage_uri) as kb:
        first = kb.call("GET", "dek/tenant-a/disk", who="tenant-a")
        old = base64.b64decode(first.json()["plaintext"])
        blob = kb.call("POST", "generate", body={"id": "tenant-a/disk"}).json()["blob"]
        deleted = kb.call("DELETE", "dek/tenant-a/disk", who="tenant-a")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"id": "tenant-a/disk", "deleted": True}
        gone = kb.call("GET", "dek/tenant-a/disk", who="tenant-a")
        assert gone.status_code == 409
        assert error_code(gone) == "Proxy.KeyDeleted"
        twice = kb.call("DELETE", "dek/tenant-a/disk", who="tenant-a")
        assert twice.status_code == 409
        refused = kb.call("POST", "unwrap", body={"id": "tenant-a/disk", "blob": blob})
        assert refused.status_code == 409
        assert "tenant-a/disk" not in kb.call("GET", "ids").json()["ids"]
    with keybroker(tmp_path / "two", kms_uri=kms_uri, storage_uri=storage_uri) as kb:
        still = kb.call("GET", "dek/tenant-a/disk", who="tenant-a")
        assert still.status_code == 409
        assert error_code(still) == "Proxy.KeyDeleted"
        reader = kb.call("GET", "dek/tenant-a/disk", who="reader", query={"recreate": "true"})
        assert reader.status_code == 403  # reviving needs 'create'
        revived = kb.call("GET", "dek/tenant-a/disk", who="tenant-a", query={"recreate": "true"})
        assert revived.status_code == 200, revived.text
        assert revived.json()["created"] is True
        new = base64.b64decode(revived.json()["plaintext"])
        assert new != old
        after = kb.call("GET", "dek/tenant-a/disk", who="reader")
        assert base64.b64decode(after.json()["plaintext"]) == new
        assert "tenant-a/disk" in kb.call("GET", "ids").json()["ids"]


def test_deleting_an_unknown_id_is_404(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:
        response = kb.call("DELETE", "dek/tenant-a/never")
        assert response.status_code == 404
        assert error_code(response) == "Proxy.KeyNotFound"


def test_recreate_does_not_replace_a_live_key(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:
        first = kb.call("GET", "dek/tenant-a/live").json()["plaintext"]
        again = kb.call("GET", "dek/tenant-a/live", query={"recreate": "true"}).json()
        assert again["plaintext"] == first and again["created"] is False


def test_tombstones_stay_out_of_the_key_namespace(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:
        kb.call("GET", "dek/tenant-a/t1")
        kb.call("DELETE", "dek/tenant-a/t1")
        files = [p.name for p in (tmp_path / "deks").rglob("*") if p.is_file()]
        assert files == ["keybroker-tombstones%2Fkey-tenant-a%2Ft1"]
        assert kb.call("GET", "ids").json()["ids"] == []
