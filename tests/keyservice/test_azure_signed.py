"""The key service over an Azure Key Vault KEK (the protocol fake): the blobs it hands out are
signed in the vault; an unsigned envelope a caller presents (forged from the public key, or
made before signing existed) is refused unless ``KeyService.TrustedStore`` says the stores
are trusted, and then ``rewrap`` signs it."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.kms import ExternalKMS, from_uris
from keybroker.kms.envelope import KeybrokerEnvelope, seal_dek
from tests.keyservice.helpers import KeyBroker, keybroker
from tests.kms.test_azure_kv import AzureEnv, azure, new_key, uri_for

__all__ = ["azure"]  # the session fixture


@pytest.fixture(scope="module", params=[False, True], ids=["untrusted", "trusted"])
def kv(
    tmp_path_factory: pytest.TempPathFactory, azure: AzureEnv, request: pytest.FixtureRequest
) -> Iterator[tuple[KeyBroker, bool]]:
    tmp = tmp_path_factory.mktemp("azure-ks")
    kms_uri, storage_uri = uri_for(azure, new_key(azure)), f"storage://file?path={tmp / 'deks'}"
    with keybroker(
        tmp, kms_uri=kms_uri, storage_uri=storage_uri, trusted_store=request.param
    ) as running:
        yield running, request.param


def _unsigned_blob(kb: KeyBroker, key_id: str, dek: bytes) -> str:
    async def make() -> bytes:
        kms = from_uris(kms_uri=kb.kms_uri, storage_uri="storage://memory")
        assert isinstance(kms, ExternalKMS)
        try:
            return await seal_dek(kms.wrapper, "key-" + key_id, dek, sign=False)
        finally:
            await kms.close()

    return base64.b64encode(asyncio.run(make())).decode()


def test_generated_blobs_are_signed_and_unwrap(kv: tuple[KeyBroker, bool]) -> None:
    kb = kv[0]
    made = kb.call("POST", "generate", body={"id": "tenant-a/g", "size": 32})
    assert made.status_code == 200, made.text
    blob = base64.b64decode(made.json()["blob"])
    assert KeybrokerEnvelope.decode(blob, "key-tenant-a/g").signature
    back = kb.call("POST", "unwrap", body={"id": "tenant-a/g", "blob": made.json()["blob"]})
    assert back.status_code == 200 and back.json()["plaintext"] == made.json()["plaintext"]


def test_an_unsigned_envelope_opens_only_with_trusted_store(
    kv: tuple[KeyBroker, bool], tmp_path: Path
) -> None:
    kb, trusted = kv
    dek = os.urandom(32)
    blob = _unsigned_blob(kb, "tenant-a/old", dek)
    opened = kb.call("POST", "unwrap", body={"id": "tenant-a/old", "blob": blob})
    rewrapped = kb.call("POST", "rewrap", body={"id": "tenant-a/old", "blob": blob})
    if not trusted:
        assert (opened.status_code, rewrapped.status_code) == (400, 400), opened.text
        assert "plaintext" not in opened.text
        return
    assert opened.status_code == 200, opened.text
    assert base64.b64decode(opened.json()["plaintext"]) == dek
    assert rewrapped.status_code == 200, rewrapped.text
    signed = base64.b64decode(rewrapped.json()["blob"])
    assert KeybrokerEnvelope.decode(signed, "key-tenant-a/old").signature
