"""Attack: an envelope whose KEK version names *another* AWS KMS key.

The AWS wrapper decrypts with the key ARN recorded in the blob (``kek_version``), which is what
lets a blob written before an alias was re-pointed still open.  But the blob is the attacker's:
a forger with write access to the store and ``Encrypt`` on any other key that keybroker's
principal may ``Decrypt`` with (another key of the account, or a key in the forger's own
account whose key policy grants keybroker ``kms:Decrypt``, with an IAM policy on ``*``) wraps
an envelope key of their own under the id's encryption context and plants the envelope: the
wrapper asked KMS to decrypt under the forger's key, and the id got a DEK of the forger's
choosing.  The recorded key must be the configured key.  Against a real moto server.
"""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms import ExternalKMS
from keybroker.kms.backends.aws import AAD_CONTEXT_KEY, AWSKMSWrapper
from keybroker.kms.base import WrappedKey
from keybroker.kms.envelope import KeybrokerEnvelope
from keybroker.kms.errors import IntegrityError
from keybroker.kms.storage.memory import MemoryStorage
from keybroker.kms.uri import parse_uri
from tests.kms.test_aws_kms import kms_client, new_key, uri_for


async def test_an_envelope_wrapped_by_another_key_does_not_open(moto_url: str) -> None:
    mine = new_key(moto_url, KeyUsage="ENCRYPT_DECRYPT")
    theirs = new_key(moto_url, KeyUsage="ENCRYPT_DECRYPT")  # the forger can Encrypt with it
    wrapper = AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, mine["KeyId"])))
    storage = MemoryStorage()
    kms = ExternalKMS(wrapper, storage)
    try:
        key_id, chosen = "key-victim", b"attacker-chosen-dek-32-bytes-!!!"
        envelope_key, nonce = os.urandom(32), os.urandom(12)
        aad = KeybrokerEnvelope.wrap_aad(key_id, len(chosen))
        out = kms_client(moto_url).encrypt(
            KeyId=theirs["Arn"],
            Plaintext=envelope_key,
            EncryptionContext={AAD_CONTEXT_KEY: base64.b64encode(aad).decode()},
        )
        dek_aad = KeybrokerEnvelope.dek_aad(key_id, len(chosen), wrapper.kek_id, theirs["Arn"])
        sealed = AESGCM(envelope_key).encrypt(nonce, chosen, dek_aad)
        blob = KeybrokerEnvelope(
            wrapper.kek_id, theirs["Arn"], out["CiphertextBlob"], nonce, sealed
        ).encode()
        await storage.put(key_id, blob)
        with pytest.raises(IntegrityError):
            await kms.get_dek(key_id, 32)
        # the wrapper itself refuses to decrypt under a key that is not its own
        foreign = WrappedKey(wrapper.kek_id, theirs["Arn"], out["CiphertextBlob"])
        with pytest.raises(IntegrityError):
            await wrapper.unwrap(foreign, aad)
    finally:
        await kms.close()


async def test_blobs_of_the_configured_key_still_open_by_alias_and_arn(moto_url: str) -> None:
    key = new_key(moto_url, KeyUsage="ENCRYPT_DECRYPT")
    alias = f"alias/kb-{os.urandom(4).hex()}"
    kms_client(moto_url).create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    for name in (alias, key["Arn"], key["KeyId"]):
        kms = ExternalKMS(
            AWSKMSWrapper.from_uri(parse_uri(uri_for(moto_url, name))), MemoryStorage()
        )
        try:
            dek = await kms.get_dek("key-a", 32)
            assert await kms.get_dek("key-a", 32) == dek
        finally:
            await kms.close()
