"""Google Cloud KMS key wrapper, driven by google-cloud-kms (REST transport).

The server is a protocol fake (tests/kms/fake_gcp_kms.py), not Google's service: no Cloud KMS
emulator exists.  It speaks the real v1 REST encrypt/decrypt wire format with real AES-GCM per
key version, CRC32C checksums, and checks the self-signed service-account JWTs google-auth
sends, so the SDK, the credentials file and our wrapper run unmodified; it also creates key
versions and moves the primary (CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion), so
``rotate``, ``keybroker kms rotate`` and a rewrap after it run against the same wire format.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.cli.kms import main
from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.gcp import GCPKMSWrapper, crc32c
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import parse_uri
from tests import logscan
from tests.kms.fake_gcp_kms import FakeGCPKMS
from tests.kms.fake_gcp_kms import crc32c as reference_crc32c
from tests.kms.fake_google_auth import service_account_file
from tests.kms.wrapper_conformance import KeyWrapperConformance

PROJECT, LOCATION, RING = "kb-project", "europe-west3", "kb-ring"


@dataclasses.dataclass(frozen=True)
class GCPEnv:
    fake: FakeGCPKMS
    url: str
    credentials: Path  # trusted by the fake
    untrusted: Path  # a well-formed key file the fake does not know


@pytest.fixture(scope="session")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCPEnv]:
    directory = tmp_path_factory.mktemp("gcp")
    fake = FakeGCPKMS()
    email = f"keybroker@{PROJECT}.iam.gserviceaccount.com"
    key = service_account_file(str(directory / "sa.json"), email)
    private_pem = json.loads((directory / "sa.json").read_text())["private_key"]
    logscan.register(*[line for line in private_pem.splitlines() if "-----" not in line])
    fake.trust(email, key.public_key())
    service_account_file(
        str(directory / "other.json"), f"intruder@{PROJECT}.iam.gserviceaccount.com"
    )
    with fake.serve() as url:
        yield GCPEnv(fake, url, directory / "sa.json", directory / "other.json")


def uri_for(env: GCPEnv, key: str, *, credentials: Path | None = None, **extra: str) -> str:
    params = {
        "projectID": PROJECT,
        "location": LOCATION,
        "keyRing": RING,
        "credentialsPath": str(credentials or env.credentials),
        "keyName": key,
        "endpoint": env.url,
        **extra,
    }
    return "kms://gcp?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def new_key(env: GCPEnv) -> tuple[str, str]:
    """(short key name, full resource name) of a fresh key."""
    short = f"k-{os.urandom(4).hex()}"
    return short, env.fake.create_key(PROJECT, LOCATION, RING, short)


@pytest.fixture
async def make(gcp: GCPEnv) -> AsyncIterator[list[GCPKMSWrapper]]:
    made: list[GCPKMSWrapper] = []
    yield made
    for w in made:
        await w.close()


def build(made: list[GCPKMSWrapper], uri: str) -> GCPKMSWrapper:
    w = GCPKMSWrapper.from_uri(parse_uri(uri))
    made.append(w)
    return w


@pytest.fixture
async def wrapper(gcp: GCPEnv) -> AsyncIterator[GCPKMSWrapper]:
    w = GCPKMSWrapper.from_uri(parse_uri(uri_for(gcp, new_key(gcp)[0])))
    yield w
    await w.close()


class TestGCPKMSConformance(KeyWrapperConformance):
    pass


# -- CRC32C ---------------------------------------------------------------------------------


def test_crc32c_known_answers() -> None:
    # RFC 3720 B.4 check value, and the all-zero 32-byte vector from the same appendix.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"") == 0


def test_crc32c_matches_google_implementation() -> None:
    for size in (1, 31, 32, 33, 255, 1024):
        data = os.urandom(size)
        assert crc32c(data) == reference_crc32c(data)


# -- URI ------------------------------------------------------------------------------------


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        GCPKMSWrapper.from_uri(parse_uri("kms://gcp?projectID=p&keyName=k"))
    for name in ("location", "keyRing", "credentialsPath"):
        assert name in str(exc.value)


def test_uri_rejects_unknown_parameter(gcp: GCPEnv) -> None:
    with pytest.raises(KMSConfigError, match="keyVersion"):
        GCPKMSWrapper.from_uri(parse_uri(uri_for(gcp, "k", keyVersion="1")))


def test_unreadable_credentials_file(gcp: GCPEnv, tmp_path: Path) -> None:
    with pytest.raises(KMSConfigError, match="credentialsPath"):
        GCPKMSWrapper.from_uri(parse_uri(uri_for(gcp, "k", credentials=tmp_path / "none.json")))
    (tmp_path / "bad.json").write_text('{"type": "service_account"}')
    with pytest.raises(KMSConfigError, match="credentialsPath"):
        GCPKMSWrapper.from_uri(parse_uri(uri_for(gcp, "k", credentials=tmp_path / "bad.json")))


KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


def test_bad_key_name() -> None:
    with pytest.raises(KMSConfigError, match="cryptoKeys"):
        GCPKMSWrapper("projects/p/keyRings/r/cryptoKeys/k", credentials=AnonymousCredentials())


def test_credentials_are_required() -> None:
    # None would let the SDK pick up GOOGLE_APPLICATION_CREDENTIALS or the metadata server.
    with pytest.raises(KMSConfigError, match="explicit credentials"):
        GCPKMSWrapper(KEY, credentials=None)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.kms", None)
    with pytest.raises(MissingExtra, match=r"keybroker\[gcp\]"):
        GCPKMSWrapper(KEY, credentials=AnonymousCredentials())


# -- behaviour ------------------------------------------------------------------------------


async def test_version_remembered_across_rotation(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    short, name = new_key(gcp)
    w = build(make, uri_for(gcp, short))
    old = await w.wrap(b"o" * 32, b"id=1")
    assert old.kek_id == name
    assert old.kek_version == f"{name}/cryptoKeyVersions/1"
    assert gcp.fake.rotate(name) == f"{name}/cryptoKeyVersions/2"
    new = await w.wrap(b"n" * 32, b"id=1")
    assert new.kek_version == f"{name}/cryptoKeyVersions/2"
    assert await w.unwrap(old, b"id=1") == b"o" * 32
    assert await w.unwrap(new, b"id=1") == b"n" * 32


async def test_rotate_makes_a_new_primary_version(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    short, name = new_key(gcp)
    w = build(make, uri_for(gcp, short))
    old = await w.wrap(b"o" * 32, b"id=1")
    gcp.fake.requests.clear()
    assert await w.rotate() == f"{name}/cryptoKeyVersions/2"
    assert gcp.fake.requests == [
        (f"/v1/{name}/cryptoKeyVersions", frozenset()),
        (f"/v1/{name}:updatePrimaryVersion", frozenset({"cryptoKeyVersionId"})),
    ]
    assert gcp.fake.keys[name].primary == 2
    new = await w.wrap(b"n" * 32, b"id=1")
    assert new.kek_version == f"{name}/cryptoKeyVersions/2"
    assert await w.unwrap(old, b"id=1") == b"o" * 32
    assert await w.unwrap(new, b"id=1") == b"n" * 32
    assert await w.rotate() == f"{name}/cryptoKeyVersions/3"


async def test_rotate_without_permission_is_a_backend_error(
    gcp: GCPEnv, make: list[GCPKMSWrapper]
) -> None:
    short, name = new_key(gcp)
    w = build(make, uri_for(gcp, short))
    try:
        gcp.fake.denied = {"cloudkms.cryptoKeyVersions.create"}
        with pytest.raises(BackendError) as exc:
            await w.rotate()
        assert str(exc.value) == "GCP KMS CreateCryptoKeyVersion failed: 403 PERMISSION_DENIED"
        assert list(gcp.fake.keys[name].versions) == [1]
        # The version is created, but the primary cannot move: the error says what is left.
        gcp.fake.denied = {"cloudkms.cryptoKeys.update"}
        with pytest.raises(BackendError) as exc:
            await w.rotate()
        assert str(exc.value) == (
            "GCP KMS UpdateCryptoKeyPrimaryVersion failed: 403 PERMISSION_DENIED "
            f"({name}/cryptoKeyVersions/2 was created but is not primary)"
        )
    finally:
        gcp.fake.denied = set()
    assert (await w.wrap(b"p" * 32, b"")).kek_version == f"{name}/cryptoKeyVersions/1"


async def test_rotate_missing_key_is_a_config_error(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    w = build(make, uri_for(gcp, "never-created"))
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.rotate()


def test_cli_rotate_then_rewrap(
    gcp: GCPEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short, name = new_key(gcp)
    kms, storage = uri_for(gcp, short), f"storage://file?path={tmp_path / 'store'}"
    get = ["get-dek", "--kms", kms, "--storage", storage, "--size", "32", "--id"]
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    deks = capsys.readouterr().out
    assert main(["rotate", "--kms", kms]) == 0
    assert capsys.readouterr() == (f"{name}/cryptoKeyVersions/2\n", "")

    assert main(["rewrap", "--kms", kms, "--storage", storage]) == 0
    version = f"{name}/cryptoKeyVersions/2"
    assert capsys.readouterr().out == (
        f"rewrap: 2 rewrapped, 0 skipped, 0 failed of 2 (KEK version {version})\n"
    )
    # Every blob is now under version 2: they still open with version 1 disabled.
    gcp.fake.set_enabled(f"{name}/cryptoKeyVersions/1", False)
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    assert capsys.readouterr().out == deks


@pytest.mark.slow
def test_rewrap_waits_for_a_new_primary_to_propagate(
    gcp: GCPEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cloud KMS may encrypt under the old primary for about a minute after a rotation.  Rewrap
    takes its target from GetCryptoKey (the new primary), so it neither skips every blob as
    "already done" nor swaps in a blob sealed under the old version: each id fails, and a run
    after the new primary has reached the servers moves them all."""
    short, name = new_key(gcp)
    kms, storage = uri_for(gcp, short), f"storage://file?path={tmp_path / 'store'}"
    get = ["get-dek", "--kms", kms, "--storage", storage, "--size", "32", "--id"]
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    deks = capsys.readouterr().out
    blobs = sorted((tmp_path / "store").rglob("*"))
    before = {p: p.read_bytes() for p in blobs if p.is_file()}
    gcp.fake.lagging.add(name)
    try:
        assert main(["rotate", "--kms", kms]) == 0
        version = f"{name}/cryptoKeyVersions/2"
        assert capsys.readouterr().out == f"{version}\n"
        assert main(["rewrap", "--kms", kms, "--storage", storage]) != 0
        out, err = capsys.readouterr()
        assert out == f"rewrap: 0 rewrapped, 0 skipped, 2 failed of 2 (KEK version {version})\n"
        assert "not in use everywhere yet; run rewrap again later" in err
        assert {p: p.read_bytes() for p in before} == before  # nothing swapped in
    finally:
        gcp.fake.propagate(name)
    assert main(["rewrap", "--kms", kms, "--storage", storage]) == 0
    assert capsys.readouterr().out.startswith("rewrap: 2 rewrapped, 0 skipped, 0 failed of 2")
    gcp.fake.set_enabled(f"{name}/cryptoKeyVersions/1", False)
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    assert capsys.readouterr().out == deks


async def test_current_version_is_the_primary(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    short, name = new_key(gcp)
    w = build(make, uri_for(gcp, short))
    assert await w.current_version() == f"{name}/cryptoKeyVersions/1"
    gcp.fake.rotate(name)
    assert await w.current_version() == f"{name}/cryptoKeyVersions/2"
    try:
        gcp.fake.denied = {"cloudkms.cryptoKeys.get"}
        with pytest.raises(BackendError, match="GetCryptoKey failed: 403 PERMISSION_DENIED"):
            await w.current_version()
    finally:
        gcp.fake.denied = set()
    with pytest.raises(KMSConfigError, match="does not exist"):
        await build(make, uri_for(gcp, "never-created")).current_version()


async def test_checksums_are_sent(gcp: GCPEnv, wrapper: GCPKMSWrapper) -> None:
    gcp.fake.requests.clear()
    await wrapper.unwrap(await wrapper.wrap(b"c" * 32, b"a"), b"a")
    (enc_path, enc_fields), (dec_path, dec_fields) = gcp.fake.requests[-2:]
    assert enc_path.endswith(":encrypt") and dec_path.endswith(":decrypt")
    assert {"plaintextCrc32c", "additionalAuthenticatedDataCrc32c"} <= enc_fields
    assert {"ciphertextCrc32c", "additionalAuthenticatedDataCrc32c"} <= dec_fields


async def test_corrupted_response_is_detected(gcp: GCPEnv, wrapper: GCPKMSWrapper) -> None:
    wrapped = await wrapper.wrap(b"c" * 32, b"a")
    gcp.fake.corrupt_checksums = True
    try:
        with pytest.raises(BackendError, match="checksum"):
            await wrapper.wrap(b"c" * 32, b"a")
        with pytest.raises(BackendError, match="checksum"):
            await wrapper.unwrap(wrapped, b"a")
    finally:
        gcp.fake.corrupt_checksums = False


async def test_disabled_version_is_a_backend_error(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    w = build(make, uri_for(gcp, new_key(gcp)[0]))
    wrapped = await w.wrap(b"d" * 32, b"")
    gcp.fake.set_enabled(wrapped.kek_version, False)
    with pytest.raises(BackendError, match="not enabled"):
        await w.unwrap(wrapped, b"")
    with pytest.raises(BackendError, match="not enabled"):
        await w.wrap(b"d" * 32, b"")


async def test_missing_key_is_a_config_error(gcp: GCPEnv, make: list[GCPKMSWrapper]) -> None:
    w = build(make, uri_for(gcp, "never-created"))
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.wrap(b"m" * 32, b"")


async def test_blob_of_another_key_is_an_integrity_error(
    gcp: GCPEnv, make: list[GCPKMSWrapper], wrapper: GCPKMSWrapper
) -> None:
    other = build(make, uri_for(gcp, new_key(gcp)[0]))
    foreign = await other.wrap(b"f" * 32, b"")
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(foreign, b"")


async def test_untrusted_credentials_are_a_backend_error(
    gcp: GCPEnv, make: list[GCPKMSWrapper]
) -> None:
    w = build(make, uri_for(gcp, new_key(gcp)[0], credentials=gcp.untrusted))
    with pytest.raises(BackendError, match="401"):
        await w.wrap(b"u" * 32, b"")


async def test_environment_does_not_override_uri(
    gcp: GCPEnv, make: list[GCPKMSWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp.untrusted))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "someone-else")
    monkeypatch.setenv("GOOGLE_CLOUD_QUOTA_PROJECT", "someone-else")
    monkeypatch.setenv("GOOGLE_API_USE_MTLS_ENDPOINT", "always")
    short, name = new_key(gcp)
    w = build(make, uri_for(gcp, short))
    wrapped = await w.wrap(b"e" * 32, b"x")
    assert wrapped.kek_id == name
    assert await w.unwrap(wrapped, b"x") == b"e" * 32


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(gcp: GCPEnv, fmt: WriteFormat) -> None:
    uri = uri_for(gcp, new_key(gcp)[0])
    built = wrapper_from_uri(parse_uri(uri))
    await built.close()
    assert isinstance(built, GCPKMSWrapper)
    kms = from_uris(kms_uri=uri, storage_uri="storage://memory", write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 32) != first
    finally:
        await kms.close()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_key_name_parser_fails_only_with_config_errors(name: str) -> None:
    try:
        wrapper = GCPKMSWrapper(name, credentials=AnonymousCredentials())
    except KMSConfigError:
        return
    parts = name.split("/")
    assert len(parts) == 8 and all(parts) and wrapper.kek_id == name
