"""Which key wrappers bind a blob to its id, and the KMS-side signature for those that cannot.

A wrapper that takes associated data declares ``binds_aad = True``
(:class:`~keybroker.kms.base.BindingDeclared`): AWS KMS (encryption
context), Google Cloud KMS (additional authenticated data), Vault/OpenBao transit
(``associated_data``), the local key file, PKCS#11 and KMIP (AES-GCM with the associated
data).  The envelope key of a blob then unwraps only for the id, DEK size and KEK it was
wrapped for, and nobody without the KEK can make one.

A wrapper that cannot (RSA-OAEP: Azure Key Vault / Managed HSM) declares ``binds_aad = False``;
one that declares nothing counts as not binding.  With such a KEK anyone holding the *public*
key can wrap an envelope key of their own and write a valid-looking envelope for any id, so a
wrapper that cannot bind must sign inside the KMS (:class:`~keybroker.kms.base.DigestSigning`)::

    async def sign_digest(self, kek_version: str, digest: bytes) -> bytes
    async def verify_digest(self, kek_version: str, digest: bytes, signature: bytes) -> bool

``digest`` is :func:`envelope_digest` (SHA-256 over the id, DEK size, KEK id and version,
wrapped key, nonce and ciphertext), signed with the KEK version that wrapped the envelope key
(Azure: ``RS256`` by the vault's ``sign``; the private key never leaves the vault).  Every
envelope such a wrapper makes is signed, and an unsigned or badly signed one does not open.  A
wrapper that can neither bind nor sign is refused (:func:`check_binding`) unless the operator
states that nobody else can write the store (``trusted_store``); a trusted store also opens
unsigned envelopes (written before signing existed), which ``rewrap`` then signs.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TypeGuard

from keybroker.kms.base import BindingDeclared, DigestSigning, KeyWrapper
from keybroker.kms.errors import KMSConfigError

__all__ = ["binds_aad", "can_sign", "check_binding", "envelope_digest"]


def binds_aad(wrapper: KeyWrapper) -> bool:
    """Does ``wrapper`` bind associated data (declared ``binds_aad = True``)?"""
    return isinstance(wrapper, BindingDeclared) and wrapper.binds_aad is True


def can_sign(wrapper: KeyWrapper) -> TypeGuard[DigestSigning]:
    """Does ``wrapper`` offer ``sign_digest`` and ``verify_digest``?"""
    return isinstance(wrapper, DigestSigning)


def check_binding(wrapper: KeyWrapper, *, trusted_store: bool) -> None:
    """Refuse a wrapper that can neither bind associated data nor sign, unless the store is
    trusted.  Raises ``KMSConfigError``."""
    if binds_aad(wrapper) or can_sign(wrapper) or trusted_store:
        return
    raise KMSConfigError(
        f"kms://{wrapper.name} can neither bind a wrapped key to its id nor sign it, so anyone "
        "who can write the store could plant a key of their own: state that the store is "
        "trusted (trusted_store=True, trustedStore=true on the storage URI, "
        "KeyService.TrustedStore)"
    )


def envelope_digest(
    key_id: str,
    dek_size: int,
    kek_id: str,
    kek_version: str,
    wrapped_key: bytes,
    nonce: bytes,
    sealed: bytes,
) -> bytes:
    """The SHA-256 an envelope's signature covers: every field, and the id and size it is for."""
    h = hashlib.sha256(b"keybroker-envelope-signature\0\x02")
    for text in (key_id, kek_id, kek_version):
        raw = text.encode("utf-8")
        h.update(struct.pack(">I", len(raw)) + raw)
    h.update(struct.pack(">I", dek_size))
    for field in (wrapped_key, nonce, sealed):
        h.update(struct.pack(">I", len(field)) + field)
    return h.digest()
