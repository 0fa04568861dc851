"""Issue 16, finding 3: a key-encryption key that cannot bind associated data (Azure Key
Vault's RSA-OAEP) lets anyone holding the public key wrap an envelope key of their own, so
every envelope it makes is signed in the vault (RS256 over the envelope's digest, the private
key never leaves it) and checked before use.  A forger with the public key and write access to
the store gets nothing: unsigned, badly signed and re-used-signature envelopes are
``IntegrityError``.  A wrapper that cannot bind and cannot sign is refused unless the operator
states that the store is trusted.  Against the Azure protocol fake (real SDK, real RSA)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.kms import ExternalKMS, KMSConfigError, from_uris
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.base import WrappedKey
from keybroker.kms.envelope import KeybrokerEnvelope, open_dek, seal_dek
from keybroker.kms.errors import IntegrityError
from keybroker.kms.rewrap import rewrap_all
from keybroker.kms.storage.memory import MemoryStorage
from tests.kms.test_azure_kv import AzureEnv, azure, new_key, uri_for

__all__ = ["azure"]  # the session fixture, shared with test_azure_kv


@pytest.fixture
async def kms(azure: AzureEnv) -> AsyncIterator[ExternalKMS]:
    built = from_uris(kms_uri=uri_for(azure, new_key(azure)), storage_uri="storage://memory")
    assert isinstance(built, ExternalKMS)
    yield built
    await built.close()


def _public_key(env: AzureEnv, kek_id: str) -> tuple[rsa.RSAPublicKey, str]:
    """What anyone with keys/get (or the published key) has: the latest public key."""
    name = kek_id.rsplit("/", 1)[1]
    bundle = env.fake.get_key(name, None)["key"]
    n, e = (int.from_bytes(_unb64url(bundle[f]), "big") for f in ("n", "e"))
    return rsa.RSAPublicNumbers(e, n).public_key(), bundle["kid"].rsplit("/", 1)[1]


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _forge(
    public: rsa.RSAPublicKey, kek_id: str, version: str, key_id: str, dek: bytes, sig: bytes
) -> bytes:
    """An envelope for ``key_id`` holding ``dek``, built from the public key alone."""
    envelope_key, nonce = os.urandom(32), os.urandom(12)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped = public.encrypt(envelope_key, oaep)
    aad = KeybrokerEnvelope.dek_aad(key_id, len(dek), kek_id, version)
    sealed = AESGCM(envelope_key).encrypt(nonce, dek, aad)
    return KeybrokerEnvelope(kek_id, version, wrapped, nonce, sealed, sig).encode()


async def test_envelopes_are_signed_in_the_vault(azure: AzureEnv, kms: ExternalKMS) -> None:
    dek = await kms.get_dek("key-a", 32)
    blob = await kms.storage.get("key-a")
    env = KeybrokerEnvelope.decode(blob, "key-a")
    assert env.signature and len(env.signature) == 256  # RS256 with the 2048-bit key
    assert any(c.endswith(f"/{env.kek_version}/sign") for c in azure.fake.calls)
    assert await kms.get_dek("key-a", 32) == dek


async def test_an_envelope_forged_from_the_public_key_is_refused(
    azure: AzureEnv, kms: ExternalKMS
) -> None:
    kek_id: str = kms.wrapper.kek_id  # type: ignore[attr-defined]
    public, version = _public_key(azure, kek_id)
    await kms.get_dek("key-genuine", 32)
    genuine = KeybrokerEnvelope.decode(await kms.storage.get("key-genuine"), "key-genuine")
    forged_dek = os.urandom(32)
    for name, signature in (
        ("unsigned", b""),
        ("garbage", os.urandom(256)),
        ("copied", genuine.signature),  # a real vault signature, over another envelope
    ):
        key_id = f"key-victim-{name}"
        await kms.storage.put(
            key_id, _forge(public, kek_id, version, key_id, forged_dek, signature)
        )
        with pytest.raises(IntegrityError) as caught:
            await kms.get_dek(key_id, 32)
        assert forged_dek.hex() not in str(caught.value)
    # the forgery itself is sound: the unwrap alone would have accepted it
    forged = KeybrokerEnvelope.decode(
        _forge(public, kek_id, version, "key-x", forged_dek, b""), "key-x"
    )
    wrapped = WrappedKey(kek_id, version, forged.wrapped_key)
    assert len(await kms.wrapper.unwrap(wrapped, b"")) == 32


async def test_a_signature_does_not_travel_to_another_id(kms: ExternalKMS) -> None:
    await kms.get_dek("key-a", 32)
    await kms.storage.put("key-b", await kms.storage.get("key-a"))
    with pytest.raises(IntegrityError):
        await kms.get_dek("key-b", 32)


class _UnboundWrapper:
    """A wrapper that neither binds associated data nor signs (AES-GCM without the AAD)."""

    name: ClassVar[str] = "unbound"
    binds_aad: ClassVar[bool] = False

    def __init__(self) -> None:
        self.kek_id = "unbound-kek"
        self._inner = LocalKeyWrapper(bytes(range(32)))

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        return await self._inner.wrap(plaintext, b"")

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        return await self._inner.unwrap(wrapped, b"")

    async def close(self) -> None:
        pass


async def test_a_wrapper_that_can_neither_bind_nor_sign_needs_a_trusted_store() -> None:
    with pytest.raises(KMSConfigError) as caught:
        ExternalKMS(_UnboundWrapper(), MemoryStorage())
    assert "trusted" in str(caught.value)
    kms = ExternalKMS(_UnboundWrapper(), MemoryStorage(), trusted_store=True)
    dek = await kms.get_dek("key-a", 16)
    assert await kms.get_dek("key-a", 16) == dek


@pytest.mark.slow
async def test_unsigned_azure_envelopes_open_only_from_a_trusted_store(
    azure: AzureEnv,
) -> None:
    """Envelopes written before signing existed: a trusted store reads them, and a rewrap
    signs them; nothing else does."""
    uri = uri_for(azure, new_key(azure))
    storage = MemoryStorage()
    trusted = from_uris(kms_uri=uri, storage_uri="storage://memory")
    assert isinstance(trusted, ExternalKMS)
    trusted = ExternalKMS(trusted.wrapper, storage, trusted_store=True)
    strict = ExternalKMS(trusted.wrapper, storage)
    deks: dict[str, bytes] = {}
    for i in range(3):
        key_id, dek = f"key-{i}", os.urandom(32)
        blob = await seal_dek(trusted.wrapper, key_id, dek, sign=False)
        assert not KeybrokerEnvelope.decode(blob, key_id).signature
        await storage.put(key_id, blob)
        deks[key_id] = dek
    for key_id, dek in deks.items():
        with pytest.raises(IntegrityError, match="not signed"):
            await strict.get_dek(key_id, 32)
        assert await trusted.get_dek(key_id, 32) == dek
    report = await rewrap_all(trusted)
    assert (report.rewrapped, report.failed) == (3, 0)
    for key_id, dek in deks.items():
        assert KeybrokerEnvelope.decode(await storage.get(key_id), key_id).signature
        assert await strict.get_dek(key_id, 32) == dek
    await trusted.close()


async def test_trusted_store_on_the_uri(azure: AzureEnv) -> None:
    uri = uri_for(azure, new_key(azure))
    kms: Any = from_uris(kms_uri=uri, storage_uri="storage://memory?trustedStore=true")
    assert kms.trusted_store
    with pytest.raises(KMSConfigError, match="trustedStore must be 'false' or 'true'"):
        from_uris(kms_uri=uri, storage_uri="storage://memory?trustedStore=yes")
    await kms.close()


async def test_open_dek_checks_the_signature_itself(kms: ExternalKMS) -> None:
    blob = await seal_dek(kms.wrapper, "key-s", b"s" * 32)
    assert await open_dek(kms.wrapper, "key-s", 32, blob) == b"s" * 32
    env = KeybrokerEnvelope.decode(blob, "key-s")
    flipped = bytearray(env.signature)
    flipped[-1] ^= 1
    bad = KeybrokerEnvelope(
        env.kek_id, env.kek_version, env.wrapped_key, env.nonce, env.sealed, bytes(flipped)
    ).encode()
    with pytest.raises(IntegrityError, match="failed authentication"):
        await open_dek(kms.wrapper, "key-s", 32, bad)


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_no_change_to_a_signed_envelope_opens(kms: ExternalKMS, data: st.DataObject) -> None:
    """Flip, cut or extend a signed envelope anywhere: IntegrityError, never another key."""
    dek = b"d" * 32
    blob = await seal_dek(kms.wrapper, "key-p", dek)
    kind = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if kind == "flip":
        at = data.draw(st.integers(0, len(blob) - 1))
        bit = data.draw(st.integers(0, 7))
        changed = blob[:at] + bytes([blob[at] ^ (1 << bit)]) + blob[at + 1 :]
    elif kind == "cut":
        changed = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        changed = blob + data.draw(st.binary(min_size=1, max_size=32))
    with pytest.raises(IntegrityError):
        await open_dek(kms.wrapper, "key-p", 32, changed)


@pytest.mark.slow
async def test_blobs_naming_unknown_versions_do_not_grow_the_client_cache(
    kms: ExternalKMS,
) -> None:
    await kms.get_dek("key-real", 32)
    genuine = KeybrokerEnvelope.decode(await kms.storage.get("key-real"), "key-real")
    for i in range(25):
        key_id = f"key-odd-{i}"
        env = KeybrokerEnvelope(
            genuine.kek_id, f"{i:032x}", genuine.wrapped_key, genuine.nonce, genuine.sealed,
            genuine.signature,
        )  # fmt: skip
        await kms.storage.put(key_id, env.encode())
        with pytest.raises(IntegrityError):
            await kms.get_dek(key_id, 32)
    cache: dict[str, Any] = kms.wrapper._crypto  # type: ignore[attr-defined]
    assert set(cache) <= {genuine.kek_version}
