"""Stored-blob formats: our id-bound envelope and Constellation's JSON, with tamper tests.

The KEK is a real AES-GCM key wrapper (``LocalKeyWrapper``); nothing is stubbed.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.envelope import ConstellationBlob, KeybrokerEnvelope, open_dek, seal_dek
from keybroker.kms.errors import IntegrityError

VECTOR = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors/constellation/blob_local.json").read_text()
)
AUTH_FAILED = "failed authentication"


@pytest.fixture
def wrapper() -> LocalKeyWrapper:
    return LocalKeyWrapper(os.urandom(32))


async def test_roundtrip_and_layout(wrapper: LocalKeyWrapper) -> None:
    dek = os.urandom(32)
    blob = await seal_dek(wrapper, "key-1", dek)
    assert blob[:5] == b"KBDK\x01"
    (n,) = struct.unpack(">H", blob[5:7])
    assert blob[7 : 7 + n].decode() == wrapper.kek_id
    env = KeybrokerEnvelope.decode(blob, "key-1")
    assert (env.kek_id, env.kek_version, env.dek_size) == (wrapper.kek_id, "1", 32)
    assert len(env.nonce) == 12 and dek not in blob
    assert await open_dek(wrapper, "key-1", 32, blob) == dek


@pytest.mark.parametrize("size", [1, 16, 32, 64, 8160])
async def test_sizes(wrapper: LocalKeyWrapper, size: int) -> None:
    dek = os.urandom(size)
    assert await open_dek(wrapper, "k", size, await seal_dek(wrapper, "k", dek)) == dek


async def test_dek_is_really_aes_gcm_under_envelope_key(wrapper: LocalKeyWrapper) -> None:
    """Decrypt by hand, following the documented layout and associated data."""
    dek = os.urandom(32)
    env = KeybrokerEnvelope.decode(await seal_dek(wrapper, "key-x", dek), "key-x")
    kek_aad = b"keybroker-kek\0\x01" + struct.pack(">H", 5) + b"key-x" + struct.pack(">I", 32)
    assert KeybrokerEnvelope.wrap_aad("key-x", 32) == kek_aad
    from keybroker.kms.base import WrappedKey

    envelope_key = await wrapper.unwrap(WrappedKey(env.kek_id, "1", env.wrapped_key), kek_aad)
    aad = KeybrokerEnvelope.dek_aad("key-x", 32, env.kek_id, env.kek_version)
    assert AESGCM(envelope_key).decrypt(env.nonce, env.sealed, aad) == dek


async def test_swapped_blobs_between_ids_fail(wrapper: LocalKeyWrapper) -> None:
    a = await seal_dek(wrapper, "key-a", os.urandom(32))
    b = await seal_dek(wrapper, "key-b", os.urandom(32))
    for key_id, blob in (("key-a", b), ("key-b", a)):
        with pytest.raises(IntegrityError) as info:
            await open_dek(wrapper, key_id, 32, blob)
        assert str(info.value) == (
            f"stored DEK for id {key_id!r} failed authentication "
            "(corrupted, swapped with another id, or sealed under another key)"
        )


async def test_wrong_requested_size(wrapper: LocalKeyWrapper) -> None:
    blob = await seal_dek(wrapper, "k", os.urandom(32))
    with pytest.raises(IntegrityError) as info:
        await open_dek(wrapper, "k", 16, blob)
    assert str(info.value) == "stored DEK for id 'k' is 32 bytes, not the requested 16"


async def test_every_flipped_bit_fails(wrapper: LocalKeyWrapper) -> None:
    blob = await seal_dek(wrapper, "key-flip", os.urandom(32))
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[index] ^= bit
            with pytest.raises(IntegrityError):
                await open_dek(wrapper, "key-flip", 32, bytes(bad))


async def test_truncated_blob_fails_with_clear_message(wrapper: LocalKeyWrapper) -> None:
    blob = await seal_dek(wrapper, "k", os.urandom(32))
    for cut in range(len(blob)):
        with pytest.raises(IntegrityError, match=r"stored (blob|DEK) for id 'k'"):
            await open_dek(wrapper, "k", 32, blob[:cut])
    with pytest.raises(IntegrityError) as info:
        await open_dek(wrapper, "k", 32, blob[:20])
    assert str(info.value) == "stored blob for id 'k' is malformed: it is truncated (in kek_id)"


async def test_relabelled_kek_version_fails(wrapper: LocalKeyWrapper) -> None:
    env = KeybrokerEnvelope.decode(await seal_dek(wrapper, "k", os.urandom(32)), "k")
    relabelled = KeybrokerEnvelope(env.kek_id, "2", env.wrapped_key, env.nonce, env.sealed)
    with pytest.raises(IntegrityError, match=AUTH_FAILED):
        await open_dek(wrapper, "k", 32, relabelled.encode())


async def test_other_kek_fails(wrapper: LocalKeyWrapper) -> None:
    blob = await seal_dek(wrapper, "k", os.urandom(32))
    with pytest.raises(IntegrityError, match=AUTH_FAILED):
        await open_dek(LocalKeyWrapper(os.urandom(32)), "k", 32, blob)


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"", "its format is not recognised"),
        (b"garbage", "its format is not recognised"),
        (b"KBDX\x01", "it does not start with the keybroker magic"),
        (b"KBDK\x03", "format version 3 is not supported"),
        (b"KBDK\x01\x00\x00", "kek_id length 0 is outside 1..1024"),
        (b"KBDK\x01\x04\x01" + b"x" * 2000, "kek_id length 1025 is outside 1..1024"),
        (b"KBDK\x01\x00\x01\xff\x00\x00", "kek_id is not UTF-8"),
        (b"KBDK\x01\x00\x01k\x00\x00\x00\x00", "wrapped key length 0 is outside 1..8192"),
        (
            b"KBDK\x01\x00\x01k\x00\x00\x00\x01w" + b"n" * 12 + b"t" * 16,
            "it is truncated (no ciphertext)",
        ),
    ],
)
async def test_malformed_headers(wrapper: LocalKeyWrapper, blob: bytes, why: str) -> None:
    with pytest.raises(IntegrityError) as info:
        await open_dek(wrapper, "k", 32, blob)
    assert str(info.value) == f"stored blob for id 'k' is malformed: {why}"


def test_encode_bounds() -> None:
    with pytest.raises(ValueError, match=r"kek_id must be 1\.\.1024 bytes"):
        KeybrokerEnvelope("", "1", b"w", b"n" * 12, b"s" * 17).encode()
    with pytest.raises(ValueError, match=r"wrapped key must be 1\.\.8192 bytes"):
        KeybrokerEnvelope("k", "1", b"", b"n" * 12, b"s" * 17).encode()


# -- Constellation ----------------------------------------------------------------------------


async def test_constellation_vector_is_read() -> None:
    wrapper = LocalKeyWrapper(bytes.fromhex(VECTOR["kek"]))
    blob = VECTOR["blob"].encode()
    dek = await open_dek(wrapper, VECTOR["id"], VECTOR["size"], blob, legacy=True)
    assert dek.hex() == VECTOR["dek"]
    with pytest.raises(IntegrityError, match="is 32 bytes, not the requested 16"):
        await open_dek(wrapper, VECTOR["id"], 16, blob, legacy=True)


async def test_constellation_blob_built_from_spec_is_read(wrapper: LocalKeyWrapper) -> None:
    """Lay a blob out by hand as go-kms-wrapping does, then read it."""
    dek, envelope_key, iv = os.urandom(32), os.urandom(32), os.urandom(12)
    wrapped = await wrapper.wrap(envelope_key, b"")
    doc: dict[str, Any] = {
        "ciphertext": base64.b64encode(AESGCM(envelope_key).encrypt(iv, dek, None)).decode(),
        "iv": base64.b64encode(iv).decode(),
        "key_info": {
            "mechanism": 1,
            "key_id": wrapped.kek_version,
            "wrapped_key": base64.b64encode(wrapped.ciphertext).decode(),
        },
    }
    blob = json.dumps(doc, indent=1).encode()  # any JSON layout, extra whitespace included
    assert await open_dek(wrapper, "any-id", 32, blob, legacy=True) == dek
    assert (
        await open_dek(wrapper, "another-id", 32, blob, legacy=True) == dek
    )  # nothing binds the id


async def test_constellation_written_blob_matches_spec(wrapper: LocalKeyWrapper) -> None:
    dek = os.urandom(32)
    blob = await seal_dek(wrapper, "k", dek, fmt="constellation")
    doc = json.loads(blob)
    assert list(doc) == ["ciphertext", "iv", "key_info"]
    assert list(doc["key_info"]) == ["mechanism", "key_id", "wrapped_key"]
    assert doc["key_info"]["mechanism"] == 1
    from keybroker.kms.base import WrappedKey

    wrapped = WrappedKey(
        wrapper.kek_id, doc["key_info"]["key_id"], base64.b64decode(doc["key_info"]["wrapped_key"])
    )
    envelope_key = await wrapper.unwrap(wrapped, b"")
    iv = base64.b64decode(doc["iv"])
    assert len(iv) == 12
    assert AESGCM(envelope_key).decrypt(iv, base64.b64decode(doc["ciphertext"]), None) == dek
    assert await open_dek(wrapper, "k", 32, blob, legacy=True) == dek
    assert ConstellationBlob.decode(blob, "k").key_id == "1"


async def test_constellation_tampered_ciphertext_fails(wrapper: LocalKeyWrapper) -> None:
    blob = await seal_dek(wrapper, "k", os.urandom(32), fmt="constellation")
    doc = json.loads(blob)
    for field in ("ciphertext", "iv"):
        raw = bytearray(base64.b64decode(doc[field]))
        raw[0] ^= 1
        bad = {**doc, field: base64.b64encode(bytes(raw)).decode()}
        with pytest.raises(IntegrityError, match=AUTH_FAILED):
            await open_dek(wrapper, "k", 32, json.dumps(bad).encode(), legacy=True)


def _blob(**changes: Any) -> bytes:
    doc = json.loads(VECTOR["blob"])
    info = {**doc["key_info"], **changes.pop("key_info", {})}
    doc = {**doc, **changes, "key_info": info}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"{not json", "it is not valid JSON"),
        (b"{\xff}", "it is not valid JSON"),
        (b"[]", "its format is not recognised"),
        (b"{}", "key_info is not a JSON object"),
        (b'{"key_info": []}', "key_info is not a JSON object"),
        (
            _blob(key_info={"mechanism": 2}),
            "key_info.mechanism is not an envelope mechanism (0: Azure Key Vault,"
            " 1: AWS KMS or Google Cloud KMS)",
        ),
        (_blob(key_info={"mechanism": True}), "key_info.mechanism is not a number"),
        (_blob(key_info={"key_id": 5}), "key_info.key_id is not a string"),
        (_blob(iv=None), "iv is missing"),
        (_blob(iv="JCQk"), "iv is not 12 bytes"),
        (_blob(iv="!!!!"), "iv is not base64"),
        (_blob(ciphertext="AAAA"), "ciphertext is truncated"),
        (_blob(key_info={"wrapped_key": ""}), "wrapped_key is missing"),
    ],
)
async def test_constellation_malformed(blob: bytes, why: str) -> None:
    wrapper = LocalKeyWrapper(bytes.fromhex(VECTOR["kek"]))
    with pytest.raises(IntegrityError) as info:
        await open_dek(wrapper, "k", 32, blob, legacy=True)
    assert str(info.value) == f"stored blob for id 'k' is malformed: {why}"


async def test_unknown_write_format(wrapper: LocalKeyWrapper) -> None:
    with pytest.raises(ValueError, match="write format must be"):
        await seal_dek(wrapper, "k", b"x" * 32, fmt="xml")  # type: ignore[arg-type]
