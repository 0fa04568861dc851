"""Constellation blobs as each go-kms-wrapping cloud wrapper really writes them (AWS and GCP:
mechanism 1; Azure Key Vault: no mechanism, key_id = key version, older: base64url text in
wrapped_key), byte-identical to Go's encoding/json; the protojson spellings; and URIs built by
Constellation with Go's url.QueryEscape."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.kms.backends.azure import AzureKeyVaultWrapper
from keybroker.kms.envelope import ConstellationBlob, open_dek
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.uri import SECRET_PARAMS, parse_uri
from tests.kms.gojson import blob_info, query_escape
from tests.kms.test_azure_kv import AzureEnv, azure, uri_for  # noqa: F401  (fixture)

VECTORS: list[dict[str, Any]] = json.loads(
    (
        Path(__file__).resolve().parent.parent / "vectors/constellation/go_kms_wrapping.json"
    ).read_text()
)["vectors"]


def fields(v: dict[str, Any]) -> tuple[bytes, bytes, str, bytes]:
    return (
        bytes.fromhex(v["ciphertext"]),
        bytes.fromhex(v["iv"]),
        v["key_id"],
        bytes.fromhex(v["wrapped_key"]),
    )


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_each_wrappers_blob_is_read(v: dict[str, Any]) -> None:
    blob = ConstellationBlob.decode(v["blob"].encode(), "k")
    assert (blob.ciphertext, blob.iv, blob.key_id, blob.wrapped_key) == fields(v)
    envelope_key = bytes.fromhex(v["envelope_key"])
    assert AESGCM(envelope_key).decrypt(blob.iv, blob.ciphertext, None).hex() == v["dek"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors_are_what_go_writes(v: dict[str, Any]) -> None:
    """The vector bytes are encoding/json's: Azure's has no mechanism at all."""
    raw = v["blob"]
    assert raw.startswith('{"ciphertext":"') and " " not in raw
    assert ('"mechanism"' in raw) == (v["mechanism"] == 1)
    assert list(json.loads(raw)["key_info"]) == (
        ["mechanism", "key_id", "wrapped_key"] if v["mechanism"] else ["key_id", "wrapped_key"]
    )


def test_gojson_matches_go_for_html_characters() -> None:
    blob = blob_info(b"c" * 17, b"i" * 12, mechanism=1, key_id="a<b>&c", wrapped_key=b"w")
    assert b'"key_id":"a\\u003cb\\u003e\\u0026c"' in blob
    assert ConstellationBlob.decode(blob, "k").key_id == "a<b>&c"


# -- other spellings of the same BlobInfo --------------------------------------------------------


def b64_variant(data: bytes, url: bool, padded: bool) -> str:
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    return text if padded else text.rstrip("=")


spelling = st.fixed_dictionaries(
    {
        "camel": st.booleans(),
        "url": st.booleans(),
        "padded": st.booleans(),
        "mechanism_as": st.sampled_from(["number", "string"]),
        "order": st.permutations(["ciphertext", "iv", "key_info"]),
        "indent": st.sampled_from([None, 1, 4]),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VECTORS), spelling)
def test_protojson_and_other_spellings_read_the_same(
    v: dict[str, Any], how: dict[str, Any]
) -> None:
    ciphertext, iv, kek, wrapped = fields(v)
    stored = json.loads(v["blob"])["key_info"].get("wrapped_key")
    stored_bytes = base64.b64decode(stored)

    def b64(data: bytes) -> str:
        return b64_variant(data, how["url"], how["padded"])

    key_info: dict[str, Any] = {}
    if v["mechanism"]:
        key_info["mechanism"] = (
            v["mechanism"] if how["mechanism_as"] == "number" else str(v["mechanism"])
        )
    key_info["keyId" if how["camel"] else "key_id"] = kek
    key_info["wrappedKey" if how["camel"] else "wrapped_key"] = b64(stored_bytes)
    parts = {"ciphertext": b64(ciphertext), "iv": b64(iv), "key_info": key_info}
    doc = {("keyInfo" if how["camel"] and k == "key_info" else k): parts[k] for k in how["order"]}
    blob = ConstellationBlob.decode(json.dumps(doc, indent=how["indent"]).encode(), "k")
    assert (blob.ciphertext, blob.iv, blob.key_id, blob.wrapped_key) == (
        ciphertext,
        iv,
        kek,
        wrapped,
    )


def spelled(v: dict[str, Any], **changes: Any) -> bytes:
    doc = json.loads(v["blob"])
    key_info = {**doc.pop("key_info"), **changes.pop("key_info", {})}
    doc = {**doc, **changes, "key_info": key_info}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


AWS, AZURE = VECTORS[0], VECTORS[2]


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (spelled(AWS, key_info={"mechanism": 2}), "key_info.mechanism is not an envelope"),
        (spelled(AWS, key_info={"mechanism": -1}), "key_info.mechanism is not an envelope"),
        (spelled(AWS, key_info={"mechanism": True}), "key_info.mechanism is not a number"),
        (spelled(AWS, key_info={"mechanism": "01"}), "key_info.mechanism is not a number"),
        (spelled(AWS, key_info={"mechanism": 1.5}), "key_info.mechanism is not a number"),
        (spelled(AWS, keyInfo={"key_id": "x"}), "key_info is given twice"),
        (spelled(AWS, key_info={"keyId": "x"}), "key_id is given twice"),
        (spelled(AWS, key_info={"wrappedKey": "AAAA"}), "wrapped_key is given twice"),
        (spelled(AWS, iv="o4w7YwCwgmWgqE9O="), "iv is not base64"),  # padding on a full group
        (spelled(AWS, iv="o4w7YwCw+_WgqE9O"), "iv is not base64"),  # two alphabets at once
        (spelled(AWS, iv=None), "iv is missing"),  # a direct-encryption blob has no iv
        (spelled(AZURE, key_info={"wrapped_key": None}), "wrapped_key is missing"),
    ],
)
def test_what_no_wrapper_writes_is_refused(blob: bytes, why: str) -> None:
    with pytest.raises(IntegrityError, match=f"^stored blob for id 'k' is malformed: {why}"):
        ConstellationBlob.decode(blob, "k")


# -- Azure Key Vault, end to end with the protocol fake ------------------------------------------


@pytest.mark.parametrize("legacy_text", [False, True], ids=["current", "older-base64url"])
async def test_azure_blob_as_go_writes_it_opens(azure: AzureEnv, legacy_text: bool) -> None:  # noqa: F811
    name = f"k-{os.urandom(4).hex()}"
    azure.fake.create_key(name)
    wrapper = AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(azure, name)))
    try:
        dek, envelope_key, iv = os.urandom(32), os.urandom(32), os.urandom(12)
        wrapped = await wrapper.wrap(envelope_key, b"")
        stored = wrapped.ciphertext
        if legacy_text:
            stored = base64.urlsafe_b64encode(stored).rstrip(b"=")
        blob = blob_info(
            AESGCM(envelope_key).encrypt(iv, dek, None),
            iv,
            mechanism=0,  # AzureKeyVaultEnvelopeAesGcmEncrypt: omitted by encoding/json
            key_id=wrapped.kek_version,  # the key version
            wrapped_key=stored,
        )
        assert b"mechanism" not in blob
        dek_read = await open_dek(wrapper, "disk-1", 32, blob, legacy=True, trusted_store=True)
        assert dek_read == dek  # RSA wrapping binds nothing: only a trusted store opens it
    finally:
        await wrapper.close()


# -- URIs built by Constellation -------------------------------------------------------------------

plain = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["keyFile", "path", "bucket", "keyName", "x"]), plain))
def test_go_query_escaped_values_read_as_constellation_meant(params: dict[str, str]) -> None:
    query = "&".join(f"{k}={query_escape(v)}" for k, v in params.items())
    assert parse_uri(f"storage://x?{query}").params == params


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SECRET_PARAMS)), plain.filter(lambda t: " " not in t))
def test_secret_with_a_plus_is_right_when_escaped(name: str, secret: str) -> None:
    """A literal '+' in a secret: %2B (as url.QueryEscape writes it) is the plus, once."""
    value = secret + "+/=%"
    assert parse_uri(f"kms://x?{name}={query_escape(value)}").params == {name: value}
    assert parse_uri(f"kms://x?{name}={query_escape(value).replace('%2B', '%252B')}").params == {
        name: value.replace("+", "%2B")
    }  # decoded exactly once: %252B is the three characters %2B


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
def test_raw_plus_in_a_secret_is_refused_not_turned_into_a_space(name: str) -> None:
    with pytest.raises(KMSConfigError) as info:
        parse_uri(f"kms://aws?{name}=wJalrXUtnFEMI/K7MDENG+bPxRfiCY")
    assert str(info.value) == (
        f"kms://aws: parameter {name} has a raw '+', which a URI reads as a space:"
        " write a plus sign as %2B"
    )
    assert "wJalr" not in str(info.value)


def test_plus_is_a_space_elsewhere() -> None:
    uri = "kms://local?keyFile=%2Fsecrets%2Fmy+kek+file.bin"
    assert parse_uri(uri).params == {"keyFile": "/secrets/my kek file.bin"}
