"""Issue 16, finding 1: Constellation-format blobs are bound to nothing, so the key service
reads them only as the migration setting ``LegacyBlobs: read`` says, only from the store under
the id asked for, and never from a request body.  The two attacks — a tenant unwrapping (or
rewrapping) another tenant's legacy blob under its own id, and a legacy blob planted at a new
id — are refused by default and possible only with the setting."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.kms import ExternalKMS, from_uris
from tests.keyservice.helpers import KeyBroker, error_code, keybroker, local_kms


def _external(kb_or_uris: KeyBroker | tuple[str, str], **options: str) -> ExternalKMS:
    kms_uri, storage_uri = (
        kb_or_uris
        if isinstance(kb_or_uris, tuple)
        else (kb_or_uris.kms_uri, kb_or_uris.storage_uri)
    )
    kms = from_uris(kms_uri=kms_uri, storage_uri=storage_uri, **options)  # type: ignore[arg-type]
    assert isinstance(kms, ExternalKMS)
    return kms


def _write_legacy(uris: tuple[str, str], name: str) -> tuple[bytes, bytes]:
    """Store a Constellation-format DEK at ``name`` (as Constellation, or ``kms get-dek
    --write-format constellation``, would); return (DEK, stored blob)."""

    async def run() -> tuple[bytes, bytes]:
        kms = _external(uris, write_format="constellation")
        try:
            dek = await kms.get_dek(name, 32)
            return dek, await kms.storage.get(name)
        finally:
            await kms.close()

    return asyncio.run(run())


def _copy(uris: tuple[str, str], blob: bytes, name: str) -> None:
    async def run() -> None:
        kms = _external(uris)
        try:
            await kms.storage.put(name, blob)
        finally:
            await kms.close()

    asyncio.run(run())


@pytest.fixture(scope="module", params=["off", "read"])
def store(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[KeyBroker, str, bytes, bytes]]:
    """A key service over a store holding tenant-b's legacy blob (and the setting)."""
    tmp = tmp_path_factory.mktemp(f"legacy-{request.param}")
    uris = local_kms(tmp)
    dek, blob = _write_legacy(uris, "key-tenant-b/secret")
    with keybroker(
        tmp, kms_uri=uris[0], storage_uri=uris[1], legacy_blobs=request.param
    ) as running:
        yield running, request.param, dek, blob


@pytest.mark.parametrize("route", ["unwrap", "rewrap"])
def test_another_tenants_legacy_blob_never_unwraps_from_a_body(
    store: tuple[KeyBroker, str, bytes, bytes], route: str
) -> None:
    kb, _, dek, blob = store
    body = {"id": f"tenant-a/{secrets.token_hex(4)}", "blob": base64.b64encode(blob).decode()}
    answer = kb.call("POST", route, who="tenant-a", body=body)
    assert answer.status_code == 400, answer.text
    assert error_code(answer) == "Proxy.InvalidArgument"
    assert "Constellation's format" in answer.text
    assert base64.b64encode(dek).decode() not in answer.text
    # not under the blob's own id either: a body is never trusted to say where it belongs
    own = kb.call("POST", route, body={**body, "id": "tenant-b/secret"})
    assert own.status_code == 400, own.text


def test_a_legacy_blob_planted_at_a_new_id(store: tuple[KeyBroker, str, bytes, bytes]) -> None:
    kb, setting, dek, blob = store
    uris = (kb.kms_uri, kb.storage_uri)
    new_id = f"tenant-b/new-disk-{secrets.token_hex(4)}"
    _copy(uris, blob, "key-" + new_id)
    answer = kb.call("GET", f"dek/{new_id}", query={"size": "32"})
    if setting == "off":  # refused: the stored key is not handed out, nor replaced
        assert answer.status_code == 500, answer.text
        assert "plaintext" not in answer.text
        assert kb.call("GET", "dek/tenant-b/secret", query={"size": "32"}).status_code == 500
    else:  # the migration setting trusts the store: this is what it costs
        assert answer.status_code == 200, answer.text
        assert answer.json()["created"] is False
        assert base64.b64decode(answer.json()["plaintext"]) == dek


def test_bound_blobs_work_whatever_the_setting(store: tuple[KeyBroker, str, bytes, bytes]) -> None:
    kb = store[0]
    made = kb.call("POST", "generate", who="tenant-a", body={"id": "tenant-a/g", "size": 32})
    assert made.status_code == 200, made.text
    back = kb.call(
        "POST", "unwrap", who="tenant-a", body={"id": "tenant-a/g", "blob": made.json()["blob"]}
    )
    assert back.status_code == 200 and back.json()["plaintext"] == made.json()["plaintext"]
    moved = kb.call(
        "POST", "unwrap", who="tenant-a", body={"id": "tenant-a/h", "blob": made.json()["blob"]}
    )
    assert moved.status_code == 400


def test_the_setting_is_checked(tmp_path: Path) -> None:
    from keybroker.config.loader import loads
    from keybroker.errors import ConfigError

    kek = tmp_path / "kek"
    kek.write_bytes(bytes(range(32)))
    text = (
        "KeyService:\n  Enabled: true\n"
        f'  KMS: "kms://local?keyFile={kek}"\n  Storage: "storage://memory"\n'
    )
    assert loads(text + "  LegacyBlobs: read\n").key_service.legacy_blobs == "read"
    assert loads(text).key_service.legacy_blobs == "off"
    assert loads(text + "  TrustedStore: true\n").key_service.trusted_store is True
    assert loads(text).key_service.trusted_store is False
    with pytest.raises(ConfigError) as caught:
        loads(text + "  LegacyBlobs: yes-please\n")
    assert caught.value.problems == [
        "<string>:5: KeyService.LegacyBlobs: expected off (the default) or read"
    ]
