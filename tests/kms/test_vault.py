"""OpenBao transit key wrapper against a real ``bao server -dev`` (TLS, its own CA)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.vault import VaultTransitWrapper, _split_ciphertext
from keybroker.kms.base import WrappedKey
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests import logscan, servers
from tests.kms.hsm_servers import BaoServer, bao_server
from tests.kms.tls_ca import TestCA
from tests.kms.wrapper_conformance import KeyWrapperConformance


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    with bao_server(tmp_path_factory.mktemp("bao")) as server:
        yield server


def new_key(
    bao: BaoServer, key_type: str = "aes256-gcm96", mount: str = "transit", **kw: object
) -> str:
    name = f"k-{os.urandom(4).hex()}"
    bao.ok("POST", f"{mount}/keys/{name}", {"type": key_type, **kw})
    return name


def uri_for(bao: BaoServer, key: str, **extra: str) -> str:
    params = {"address": bao.url, "token": bao.token, "keyName": key, "caFile": str(bao.ca_file)}
    params.update(extra)
    params = {k: v for k, v in params.items() if v != ""}
    return "kms://vault?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def build(bao: BaoServer, key: str, **extra: str) -> VaultTransitWrapper:
    return VaultTransitWrapper.from_uri(parse_uri(uri_for(bao, key, **extra)))


@pytest.fixture(scope="session")
def bao_key(bao: BaoServer) -> str:
    return new_key(bao)


@pytest.fixture
async def wrapper(bao: BaoServer, bao_key: str) -> AsyncIterator[VaultTransitWrapper]:
    w = build(bao, bao_key)
    yield w
    await w.close()


@pytest.fixture
async def make() -> AsyncIterator[list[VaultTransitWrapper]]:
    made: list[VaultTransitWrapper] = []
    yield made
    for w in made:
        await w.close()


class TestVaultConformance(KeyWrapperConformance):
    pass


# -- URI ------------------------------------------------------------------------------------


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        VaultTransitWrapper.from_uri(parse_uri("kms://vault?mount=transit"))
    assert "address, token, keyName" in str(exc.value)


def test_uri_rejects_unknown_and_empty_parameters(bao: BaoServer) -> None:
    with pytest.raises(KMSConfigError, match=r"unknown parameter.*: context"):
        build(bao, "k", context="x")
    with pytest.raises(KMSConfigError, match="parameter namespace is empty"):
        VaultTransitWrapper.from_uri(parse_uri(uri_for(bao, "k") + "&namespace="))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"address": "ftp://127.0.0.1:1"}, "address must be an http:// or https:// URL"),
        ({"address": "127.0.0.1:8200"}, "address must be an http:// or https:// URL"),
        ({"address": "https://u:p@127.0.0.1:1"}, "must not have a user, query or fragment"),
        ({"address": "https://127.0.0.1:1/?x=1"}, "must not have a user, query or fragment"),
        ({"keyName": "a/b"}, "keyName must be letters"),
        ({"keyName": "../sys"}, "keyName must be letters"),
        ({"mount": "transit/../sys"}, "mount must be letters"),
        ({"mount": "/transit"}, "mount must be letters"),
        ({"namespace": "ns 1"}, "namespace must be letters"),
    ],
)
def test_bad_values_are_named(bao: BaoServer, extra: dict[str, str], message: str) -> None:
    with pytest.raises(KMSConfigError, match=message.replace("(", r"\(")):
        build(bao, extra.pop("keyName", "k"), **extra)


def test_token_from_unset_environment_variable(bao: BaoServer) -> None:
    os.environ.pop("KB_TEST_BAO_TOKEN", None)
    with pytest.raises(KMSConfigError, match="token: environment variable KB_TEST_BAO_TOKEN"):
        build(bao, "k", token="env:KB_TEST_BAO_TOKEN")


def test_unreadable_ca_file(bao: BaoServer, tmp_path: Path) -> None:
    with pytest.raises(KMSConfigError, match="cannot load caFile"):
        build(bao, "k", caFile=str(tmp_path / "none.pem"))


def test_repr_hides_the_token(bao: BaoServer) -> None:
    w = build(bao, "k")
    assert bao.token not in repr(w) and bao.token not in repr(vars(w))


# -- behaviour ------------------------------------------------------------------------------


async def test_records_key_version_and_blob_is_transit_ciphertext(
    bao: BaoServer, bao_key: str, wrapper: VaultTransitWrapper
) -> None:
    wrapped = await wrapper.wrap(b"t" * 32, b"id=1")
    assert (wrapped.kek_id, wrapped.kek_version) == (f"transit/{bao_key}", "v1")
    # An operator holding the blob can decrypt it with transit directly: no private format.
    ciphertext = f"vault:v1:{base64.b64encode(wrapped.ciphertext).decode()}"
    body = {"ciphertext": ciphertext, "associated_data": base64.b64encode(b"id=1").decode()}
    out = bao.ok("POST", f"transit/decrypt/{bao_key}", body)
    assert base64.b64decode(out["data"]["plaintext"]) == b"t" * 32


async def test_rotation_keeps_old_blobs_and_rewrap_moves_them(
    bao: BaoServer, make: list[VaultTransitWrapper]
) -> None:
    key = new_key(bao)
    make.append(w := build(bao, key))
    old = await w.wrap(b"o" * 32, b"id=1")
    old_plain = await w.wrap(b"p" * 32, b"")
    bao.ok("POST", f"transit/keys/{key}/rotate")
    new = await w.wrap(b"n" * 32, b"id=1")
    assert (old.kek_version, new.kek_version) == ("v1", "v2")
    assert await w.unwrap(old, b"id=1") == b"o" * 32
    moved = await w.rewrap(old, b"id=1")  # decrypt + encrypt: transit rewrap has no aad
    moved_plain = await w.rewrap(old_plain, b"")  # transit rewrap
    assert (moved.kek_version, moved_plain.kek_version) == ("v2", "v2")
    # Retire version 1: only the rewrapped blobs still open.
    bao.ok("POST", f"transit/keys/{key}/config", {"min_decryption_version": 2})
    assert await w.unwrap(moved, b"id=1") == b"o" * 32
    assert await w.unwrap(moved_plain, b"") == b"p" * 32
    with pytest.raises(IntegrityError):
        await w.unwrap(old, b"id=1")
    with pytest.raises(IntegrityError):
        await w.rewrap(moved, b"id=2")


async def test_relabelled_version_is_an_integrity_error(
    bao: BaoServer, make: list[VaultTransitWrapper]
) -> None:
    key = new_key(bao)
    make.append(w := build(bao, key))
    wrapped = await w.wrap(b"v" * 32, b"a")
    bao.ok("POST", f"transit/keys/{key}/rotate")
    for version in ("v2", "v3", "1", "vault:v1", "v01", ""):
        with pytest.raises(IntegrityError):
            await w.unwrap(dataclasses.replace(wrapped, kek_version=version), b"a")


async def test_blob_of_another_key_is_an_integrity_error(
    bao: BaoServer, wrapper: VaultTransitWrapper, make: list[VaultTransitWrapper]
) -> None:
    make.append(other := build(bao, new_key(bao)))
    foreign = await other.wrap(b"f" * 32, b"a")
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(foreign, b"a")


@pytest.mark.parametrize("key_type", ["aes128-gcm96", "chacha20-poly1305", "xchacha20-poly1305"])
async def test_other_aead_key_types(
    bao: BaoServer, make: list[VaultTransitWrapper], key_type: str
) -> None:
    make.append(w := build(bao, new_key(bao, key_type)))
    wrapped = await w.wrap(b"x" * 32, b"a")
    assert await w.unwrap(wrapped, b"a") == b"x" * 32
    with pytest.raises(IntegrityError):
        await w.unwrap(wrapped, b"b")


async def test_derived_key_gets_a_context(bao: BaoServer, make: list[VaultTransitWrapper]) -> None:
    make.append(w := build(bao, new_key(bao, derived=True)))
    wrapped = await w.wrap(b"d" * 32, b"a")
    assert await w.unwrap(wrapped, b"a") == b"d" * 32
    with pytest.raises(IntegrityError):
        await w.unwrap(wrapped, b"b")
    assert await w.unwrap(await w.rewrap(wrapped, b"a"), b"a") == b"d" * 32


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ({"key_type": "rsa-2048"}, "type rsa-2048 has no associated data"),
        ({"derived": True, "convergent_encryption": True}, "convergent encryption"),
        ({"key_type": "ed25519"}, "does not support encryption"),
    ],
)
async def test_unusable_key_is_refused(
    bao: BaoServer, make: list[VaultTransitWrapper], kind: dict[str, object], message: str
) -> None:
    key_type = str(kind.pop("key_type", "aes256-gcm96"))
    make.append(w := build(bao, new_key(bao, key_type, **kind)))
    with pytest.raises(KMSConfigError, match=message):
        await w.wrap(b"k" * 32, b"")


async def test_missing_key_is_refused_and_not_created(
    bao: BaoServer, make: list[VaultTransitWrapper]
) -> None:
    # transit's encrypt would create the key: open() must stop before that happens.
    make.append(w := build(bao, "never-made"))
    with pytest.raises(KMSConfigError, match="'transit/never-made' does not exist"):
        await w.wrap(b"k" * 32, b"")
    assert bao.call("GET", "transit/keys/never-made")[0] == 404


async def test_key_deleted_after_open(bao: BaoServer, make: list[VaultTransitWrapper]) -> None:
    key = new_key(bao)
    make.append(w := build(bao, key))
    wrapped = await w.wrap(b"k" * 32, b"")
    bao.ok("POST", f"transit/keys/{key}/config", {"deletion_allowed": True})
    bao.ok("DELETE", f"transit/keys/{key}")
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.unwrap(wrapped, b"")


async def test_wrong_token_is_named_without_the_token(
    bao: BaoServer, bao_key: str, make: list[VaultTransitWrapper]
) -> None:
    wrong = "s.wrong-" + os.urandom(8).hex()
    logscan.register(wrong)
    make.append(w := build(bao, bao_key, token=wrong))
    with pytest.raises(KMSConfigError, match="may not read") as exc:
        await w.open()
    assert wrong not in str(exc.value) and bao.token not in str(exc.value)


async def test_least_privilege_policy(
    bao: BaoServer, bao_key: str, make: list[VaultTransitWrapper], tmp_path: Path
) -> None:
    policy = "\n".join(
        f'path "transit/{p}/{bao_key}" {{ capabilities = ["{c}"] }}'
        for p, c in (("keys", "read"), ("encrypt", "update"), ("decrypt", "update"))
    )
    bao.ok("PUT", "sys/policies/acl/kb-wrap", {"policy": policy})
    token = bao.ok(
        "POST", "auth/token/create", {"policies": ["kb-wrap"], "no_default_policy": True}
    )
    secret = token["auth"]["client_token"]
    logscan.register(secret)
    (tmp_path / "token").write_text(secret + "\n")
    make.append(w := build(bao, bao_key, token=f"file:{tmp_path / 'token'}"))
    wrapped = await w.wrap(b"l" * 32, b"a")
    assert await w.unwrap(wrapped, b"a") == b"l" * 32
    with pytest.raises(BackendError, match="rewrap failed: permission denied"):
        await w.rewrap(wrapped, b"")


async def test_namespace(bao: BaoServer, make: list[VaultTransitWrapper]) -> None:
    ns = f"ns{os.urandom(3).hex()}"
    bao.ok("POST", f"sys/namespaces/{ns}")
    status, _ = bao.call("POST", f"{ns}/sys/mounts/kb", {"type": "transit"})
    assert status in (200, 204)
    key = new_key(bao, mount=f"{ns}/kb")
    make.append(w := build(bao, key, namespace=ns, mount="kb"))
    wrapped = await w.wrap(b"n" * 32, b"a")
    assert wrapped.kek_id == f"{ns}/kb/{key}"
    assert await w.unwrap(wrapped, b"a") == b"n" * 32
    make.append(outside := build(bao, key, mount="kb"))
    with pytest.raises(KMSConfigError):
        await outside.open()


async def test_tls_is_verified(
    bao: BaoServer, bao_key: str, make: list[VaultTransitWrapper], tmp_path: Path
) -> None:
    other = TestCA.create(tmp_path)
    make.append(w := build(bao, bao_key, caFile=str(other.ca_path)))
    with pytest.raises(BackendError, match="vault keys failed: ClientConnectorCertificateError"):
        await w.open()
    make.append(w := build(bao, bao_key, caFile=""))  # system trust store: the test CA is not in it
    with pytest.raises(BackendError, match="Certificate"):
        await w.open()


async def test_unreachable_server(make: list[VaultTransitWrapper]) -> None:
    port = servers.free_port()
    w = VaultTransitWrapper(f"http://127.0.0.1:{port}", "k", token=Secret("t"))
    make.append(w)
    with pytest.raises(BackendError, match="vault keys failed"):
        await w.open()


async def test_environment_is_ignored(
    bao: BaoServer, bao_key: str, make: list[VaultTransitWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{servers.free_port()}"
    for var in ("VAULT_ADDR", "BAO_ADDR", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, dead)
    for var in ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_NAMESPACE", "BAO_NAMESPACE"):
        monkeypatch.setenv(var, "bogus")
    make.append(w := build(bao, bao_key))
    assert await w.unwrap(await w.wrap(b"e" * 16, b""), b"") == b"e" * 16


async def test_empty_ciphertext_is_refused_before_any_request() -> None:
    w = VaultTransitWrapper("http://127.0.0.1:1", "k", token=Secret("t"))
    with pytest.raises(IntegrityError):
        await w.unwrap(WrappedKey("transit/k", "v1", b""), b"")
    await w.close()


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(
    bao: BaoServer, bao_key: str, tmp_path: Path, fmt: WriteFormat
) -> None:
    (tmp_path / "token").write_text(bao.token)
    uri = uri_for(bao, bao_key, token=f"file:{tmp_path / 'token'}")
    built = wrapper_from_uri(parse_uri(uri))
    assert isinstance(built, VaultTransitWrapper)
    await built.close()
    kms = from_uris(kms_uri=uri, storage_uri="storage://memory", write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 32) != first
    finally:
        await kms.close()


def test_bad_uri_fails_before_storage() -> None:
    with pytest.raises(KMSConfigError, match="kms://vault: missing parameter"):
        from_uris(kms_uri="kms://vault?address=http://x", storage_uri="storage://memory")


# -- fuzzing --------------------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.text(max_size=60), st.text(max_size=60))
def test_settings_fail_only_with_config_errors(
    address: str, key: str, mount: str, namespace: str
) -> None:
    try:
        w = VaultTransitWrapper(
            address, key, token=Secret("t"), mount=mount, namespace=namespace or None
        )
    except KMSConfigError:
        return
    # Whatever was accepted cannot step outside the mount: no '..', no empty segment.
    assert _SEGMENT.fullmatch(key)
    for part in (*mount.split("/"), *(namespace.split("/") if namespace else ())):
        assert _SEGMENT.fullmatch(part)
    assert w.kek_id.endswith(f"{mount}/{key}")


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"vault:v[0-9]{1,3}:[A-Za-z0-9+/=]{0,40}")))
@example("vault:v1:AB==")  # non-canonical padding bits: once decoded to what AA== is
def test_server_ciphertext_parser(value: str) -> None:
    try:
        version, raw = _split_ciphertext(value)
    except BackendError:
        return
    assert value == f"vault:{version}:{base64.b64encode(raw).decode()}"


# -- broken servers -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def broken_server(body: bytes, status: int = 200) -> AsyncIterator[str]:
    """An HTTP server on loopback that answers every request with ``body``."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{" + b" " * (2 << 20) + b"}", 200, "oversized body"),
        (b"<html>proxy error</html>", 200, "without a data object"),
        (b'{"data": []}', 200, "without a data object"),
        (b"", 502, "vault key read failed: HTTP 502"),
        (b'{"errors": ["Vault is sealed"]}', 503, "vault key read failed: HTTP 503"),
    ],
)
async def test_broken_server_answers(body: bytes, status: int, message: str) -> None:
    async with broken_server(body, status) as url:
        w = VaultTransitWrapper(url, "k", token=Secret("t"))
        try:
            with pytest.raises(BackendError, match=message):
                await w.open()
        finally:
            await w.close()


async def test_encrypt_answer_that_is_not_transit_ciphertext() -> None:
    key = {"type": "aes256-gcm96", "supports_encryption": True, "supports_decryption": True}
    async with broken_server(json.dumps({"data": {**key, "ciphertext": "v1:abc"}}).encode()) as url:
        w = VaultTransitWrapper(url, "k", token=Secret("t"))
        try:
            with pytest.raises(BackendError, match="not a vault:vN: ciphertext"):
                await w.wrap(b"k" * 32, b"")
        finally:
            await w.close()
