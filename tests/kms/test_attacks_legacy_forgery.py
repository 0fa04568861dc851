"""Attack: the legacy-blob migration setting as a way around the vault signature.

Azure Key Vault's RSA-OAEP takes no associated data, so a keybroker envelope is also signed in
the vault.  A Constellation-format blob cannot carry a signature: with ``legacy_blobs="read"``
a forger holding only the public key and write access to the store could plant a blob holding
a DEK of their choosing under any id, and ``rewrap`` (the migration) would then re-seal it as a
*signed*, bound envelope, laundering the forgery for good.  For a KEK that cannot bind, a
Constellation blob is as unsigned as an unsigned envelope: it opens only from a trusted store,
and writing that format needs one too.  Against the Azure protocol fake (real SDK, real RSA).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms import ExternalKMS, KMSConfigError, from_uris
from keybroker.kms.errors import IntegrityError
from keybroker.kms.rewrap import rewrap_all
from keybroker.kms.storage.memory import MemoryStorage
from tests.kms.test_azure_kv import AzureEnv, azure, new_key, uri_for
from tests.kms.test_unbound_wrappers import _public_key

__all__ = ["azure"]


def _forge_legacy(public: Any, version: str, dek: bytes) -> bytes:
    """A Constellation blob holding ``dek``, made from the public key alone."""
    envelope_key, iv = os.urandom(32), os.urandom(12)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    doc = {
        "ciphertext": base64.b64encode(AESGCM(envelope_key).encrypt(iv, dek, None)).decode(),
        "iv": base64.b64encode(iv).decode(),
        "key_info": {
            "mechanism": 1,
            "key_id": version,
            "wrapped_key": base64.b64encode(public.encrypt(envelope_key, oaep)).decode(),
        },
    }
    return json.dumps(doc).encode()


async def test_a_legacy_blob_forged_from_the_public_key_does_not_open(azure: AzureEnv) -> None:
    uri = uri_for(azure, new_key(azure))
    storage = MemoryStorage()
    built = from_uris(kms_uri=uri, storage_uri="storage://memory")
    assert isinstance(built, ExternalKMS)
    kms = ExternalKMS(built.wrapper, storage, legacy_blobs="read")
    try:
        public, version = _public_key(azure, str(getattr(kms.wrapper, "kek_id", "")))
        chosen = b"attacker-chosen-dek-32-bytes-!!!"
        await storage.put("key-victim", _forge_legacy(public, version, chosen))
        with pytest.raises(IntegrityError):
            await kms.get_dek("key-victim", 32)
        # nor does the migration launder it into a signed envelope
        report = await rewrap_all(kms)
        assert report.rewrapped == 0
        with pytest.raises(IntegrityError):
            await ExternalKMS(kms.wrapper, storage).get_dek("key-victim", 32)
    finally:
        await kms.close()


async def test_writing_constellation_format_with_a_kek_that_cannot_bind_needs_trust(
    azure: AzureEnv,
) -> None:
    uri = uri_for(azure, new_key(azure))
    with pytest.raises(KMSConfigError, match="trusted"):
        from_uris(kms_uri=uri, storage_uri="storage://memory", write_format="constellation")
    kms = from_uris(
        kms_uri=uri, storage_uri="storage://memory?trustedStore=true", write_format="constellation"
    )
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
    finally:
        await kms.close()
