"""ClusterKMS: HKDF-SHA256 known answers (data files) and input guards."""

from __future__ import annotations

import base64
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from keybroker.kms.cluster import MAX_DEK_SIZE, ClusterKMS, hkdf_sha256
from keybroker.kms.errors import KMSConfigError
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def _load(path: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / path).read_text())
    return list(data["vectors"])


RFC5869 = _load("hkdf/rfc5869.json")
CONSTELLATION = _load("constellation/cluster_kms.json")


@pytest.mark.parametrize("v", RFC5869, ids=[v["name"] for v in RFC5869])
def test_hkdf_rfc5869(v: dict[str, Any]) -> None:
    okm = hkdf_sha256(
        bytes.fromhex(v["ikm"]), bytes.fromhex(v["salt"]), bytes.fromhex(v["info"]), v["length"]
    )
    assert okm.hex() == v["okm"]


@pytest.mark.parametrize("v", RFC5869[:2], ids=[v["name"] for v in RFC5869[:2]])
async def test_cluster_kms_reproduces_rfc5869(v: dict[str, Any]) -> None:
    kms = ClusterKMS(bytes.fromhex(v["ikm"]), bytes.fromhex(v["salt"]))
    assert kms.derive(bytes.fromhex(v["info"]), v["length"]).hex() == v["okm"]


def test_cluster_kms_rejects_rfc5869_a3_empty_salt() -> None:
    v = RFC5869[2]
    assert v["salt"] == ""
    with pytest.raises(KMSConfigError, match=r"^salt must not be empty$"):
        ClusterKMS(bytes.fromhex(v["ikm"]), b"")


@pytest.mark.parametrize("v", CONSTELLATION, ids=[v["id"] for v in CONSTELLATION])
async def test_constellation_known_answers(v: dict[str, Any]) -> None:
    kms = ClusterKMS(bytes.fromhex(v["master_secret"]), bytes.fromhex(v["salt"]))
    assert (await kms.get_dek(v["id"], v["size"])).hex() == v["dek"]


@pytest.mark.parametrize("v", CONSTELLATION, ids=[v["id"] for v in CONSTELLATION])
async def test_constellation_known_answers_via_uri(v: dict[str, Any]) -> None:
    key = base64.urlsafe_b64encode(bytes.fromhex(v["master_secret"])).decode()
    salt = base64.urlsafe_b64encode(bytes.fromhex(v["salt"])).decode()
    parsed = parse_uri(f"kms://cluster-kms?key={key}&salt={salt}")
    kms = ClusterKMS.from_uri(parsed, check_strength=False)  # library use: the vectors as given
    assert (await kms.get_dek(v["id"], v["size"])).hex() == v["dek"]


async def test_prefix_property_and_id_sensitivity() -> None:
    kms = ClusterKMS(bytes(range(32)), bytes(range(32, 64)))
    long = await kms.get_dek("key-a", 64)
    assert await kms.get_dek("key-a", 32) == long[:32]  # HKDF output is a prefix stream
    assert await kms.get_dek("key-A", 32) != long[:32]  # ids are case-sensitive
    assert len(await kms.get_dek("key-a", MAX_DEK_SIZE)) == MAX_DEK_SIZE


async def test_secret_wrapper_accepted() -> None:
    a = ClusterKMS(Secret("s" * 16), b"salt")
    b = ClusterKMS(b"s" * 16, b"salt")
    assert await a.get_dek("x", 16) == await b.get_dek("x", 16)


@pytest.mark.parametrize(
    ("secret", "salt", "kwargs", "message"),
    [
        (b"", b"salt", {}, "master secret must be at least 16 bytes"),
        (b"x" * 15, b"salt", {}, "master secret must be at least 16 bytes"),
        (b"x" * 16, b"", {}, "salt must not be empty"),
        (b"x" * 16, b"y" * 31, {"min_salt_bytes": 32}, "salt must be at least 32 bytes"),
    ],
)
def test_rejects_short_material(
    secret: bytes, salt: bytes, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(KMSConfigError, match=f"^{message}$"):
        ClusterKMS(secret, salt, **kwargs)


def test_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        ClusterKMS("x" * 16, b"salt")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "exc", "message"),
    [
        (0, ValueError, "DEK size must be at least 1 byte"),
        (-1, ValueError, "DEK size must be at least 1 byte"),
        (MAX_DEK_SIZE + 1, ValueError, "DEK size must be at most 8160 bytes"),
        (2**32, ValueError, "DEK size must be at most 8160 bytes"),
        (True, TypeError, "DEK size must be an int"),
        (32.0, TypeError, "DEK size must be an int"),
    ],
)
async def test_rejects_bad_sizes(size: Any, exc: type[Exception], message: str) -> None:
    kms = ClusterKMS(b"x" * 16, b"salt")
    with pytest.raises(exc, match=f"^{message}$"):
        await kms.get_dek("id", size)


async def test_huge_size_fails_before_allocating() -> None:
    kms = ClusterKMS(b"x" * 16, b"salt")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="at most"):
            await kms.get_dek("id", 4 * 2**30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


@pytest.mark.parametrize(
    ("dek_id", "exc", "message"),
    [
        ("", ValueError, "DEK id must not be empty"),
        ("\udc80", ValueError, "no lone surrogates"),
        ("x" * 1025, ValueError, "at most 1024 UTF-8 bytes"),
        (b"id", TypeError, "DEK id must be a str"),
    ],
)
async def test_rejects_bad_ids(dek_id: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        await ClusterKMS(b"x" * 16, b"salt").get_dek(dek_id, 32)


def test_repr_hides_material() -> None:
    kms = ClusterKMS(b"\x01" * 16, b"\x02" * 32)
    assert repr(kms) == "ClusterKMS(master_secret=***, salt=***)"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", r"missing parameter\(s\): key, salt$"),
        ("?key=AAAAAAAAAAAAAAAAAAAAAA==", r"missing parameter\(s\): salt$"),
        ("?key=AAAAAAAAAAAAAAAAAAAAAA==&salt=AA==&pepper=x", r"unknown parameter\(s\): pepper$"),
        ("?key=not%2Bbase64&salt=AA==", "parameter key is not URL-safe base64$"),
        ("?key=AAAAAAAAAAAAAAAAAAAAAA==&salt=A", "parameter salt is not URL-safe base64$"),
        ("?key=AAAA&salt=AA==", "master secret must be at least 16 bytes$"),
    ],
)
def test_from_uri_errors(query: str, message: str) -> None:
    with pytest.raises(KMSConfigError, match="^kms://cluster-kms: " + message):
        ClusterKMS.from_uri(parse_uri("kms://cluster-kms" + query))


async def test_from_uri_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    v = CONSTELLATION[2]  # the vector whose master secret is not refused as weak
    key = base64.urlsafe_b64encode(bytes.fromhex(v["master_secret"])).decode()
    monkeypatch.setenv("KB_TEST_CLUSTER_KEY", key)
    salt = base64.urlsafe_b64encode(bytes.fromhex(v["salt"])).decode().rstrip("=")  # optional
    kms = ClusterKMS.from_uri(
        parse_uri(f"kms://cluster-kms?key=env:KB_TEST_CLUSTER_KEY&salt={salt}")
    )
    assert (await kms.get_dek(v["id"], 32)).hex() == v["dek"]
