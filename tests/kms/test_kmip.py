"""KMIP key wrapper against a real PyKMIP server (TLS 1.2, client certificates, test CA).

Keys are made and inspected with PyKMIP's own client (``ProxyKmipClient``) in a separate
process, as an operator's tool would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.kmip import KMIPWrapper
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import parse_uri
from tests import servers
from tests.kms.hsm_servers import KmipCA, KmipServer, kmip_server
from tests.kms.wrapper_conformance import KeyWrapperConformance


@pytest.fixture(scope="session")
def kmip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmipServer]:
    with kmip_server(tmp_path_factory.mktemp("kmip")) as server:
        yield server


@pytest.fixture(scope="session")
def kmip_keys(kmip: KmipServer) -> list[str]:
    """A few active AES-256 keys, made in one admin call (each call starts a process)."""
    return kmip.create_keys(4)


def uri_for(kmip: KmipServer, key: str, **extra: str) -> str:
    params = {
        "host": "127.0.0.1",
        "port": str(kmip.port),
        "certFile": str(kmip.client_cert),
        "keyFile": str(kmip.client_key),
        "caFile": str(kmip.ca.ca_path),
        "keyID": key,
    }
    params.update(extra)
    return "kms://kmip?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


@pytest.fixture
async def make() -> AsyncIterator[list[KMIPWrapper]]:
    made: list[KMIPWrapper] = []
    yield made
    for w in made:
        await w.close()


def build(made: list[KMIPWrapper], kmip: KmipServer, key: str, **extra: str) -> KMIPWrapper:
    w = KMIPWrapper.from_uri(parse_uri(uri_for(kmip, key, **extra)))
    made.append(w)
    return w


@pytest.fixture
async def wrapper(kmip: KmipServer, kmip_keys: list[str]) -> AsyncIterator[KMIPWrapper]:
    w = KMIPWrapper.from_uri(parse_uri(uri_for(kmip, kmip_keys[0])))
    yield w
    await w.close()


class TestKMIPConformance(KeyWrapperConformance):
    pass


# -- URI ------------------------------------------------------------------------------------


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        KMIPWrapper.from_uri(parse_uri("kms://kmip?host=h&keyID=1"))
    assert "missing parameter(s): port, certFile, keyFile, caFile" in str(exc.value)


def test_uri_rejects_unknown_and_empty_parameters(kmip: KmipServer) -> None:
    with pytest.raises(KMSConfigError, match=r"unknown parameter\(s\): password"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1", password="x")))
    with pytest.raises(KMSConfigError, match="parameter serverName is empty"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1", serverName="")))


@pytest.mark.parametrize("port", ["x", "0", "65536", "-1", "5696 ", "٣"])
def test_bad_port(kmip: KmipServer, port: str) -> None:
    with pytest.raises(KMSConfigError, match=r"parameter port must be 1\.\.65535"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1", port=port)))


@pytest.mark.parametrize("param", ["certFile", "keyFile", "caFile"])
def test_unreadable_tls_files_are_named(kmip: KmipServer, tmp_path: Path, param: str) -> None:
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(KMSConfigError, match=f"cannot load {param}|with {param} {missing}"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1", **{param: missing})))


def test_key_not_matching_certificate(kmip: KmipServer, tmp_path: Path) -> None:
    _, other_key = KmipCA.create(tmp_path).issue("x", "x")
    with pytest.raises(KMSConfigError, match="cannot load certFile"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1", keyFile=str(other_key))))


def test_missing_sdk_names_the_extra(kmip: KmipServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kmip", None)
    with pytest.raises(MissingExtra, match=r"keybroker\[kmip\]"):
        KMIPWrapper.from_uri(parse_uri(uri_for(kmip, "1")))


# -- behaviour ------------------------------------------------------------------------------


async def test_wrapped_form_is_plain_aes_gcm_under_the_server_key(
    kmip: KmipServer, kmip_keys: list[str], wrapper: KMIPWrapper
) -> None:
    # The server's copy of the key (fetched by an operator with PyKMIP's client) opens the
    # blob as iv || ciphertext || tag with the aad: the server did AES-GCM, not something else.
    wrapped = await wrapper.wrap(b"g" * 32, b"id=1")
    assert (wrapped.kek_id, wrapped.kek_version) == (kmip_keys[0], kmip_keys[0])
    key_hex = kmip.admin(f"print(client.get({kmip_keys[0]!r}).value.hex())").strip()
    data = wrapped.ciphertext
    assert AESGCM(bytes.fromhex(key_hex)).decrypt(data[:12], data[12:], b"id=1") == b"g" * 32


async def test_rotation_to_a_new_key(
    kmip: KmipServer, kmip_keys: list[str], make: list[KMIPWrapper]
) -> None:
    old_key, new_key = kmip_keys[1], kmip_keys[2]
    old = await build(make, kmip, old_key).wrap(b"o" * 32, b"id=1")
    w = build(make, kmip, new_key)
    new = await w.wrap(b"n" * 32, b"id=1")
    assert new.kek_version == new_key
    assert await w.unwrap(old, b"id=1") == b"o" * 32  # the recorded key id is used
    for version in (new_key, "no-such-key", ""):
        with pytest.raises(IntegrityError):
            await w.unwrap(dataclasses.replace(old, kek_version=version), b"id=1")


async def test_missing_key(kmip: KmipServer, make: list[KMIPWrapper]) -> None:
    with pytest.raises(KMSConfigError, match="'999999' does not exist or this client may not"):
        await build(make, kmip, "999999").open()


async def test_key_of_another_client(
    kmip: KmipServer, make: list[KMIPWrapper], tmp_path: Path
) -> None:
    # Objects belong to the identity (certificate common name) that created them.
    cert, key = kmip.ca.issue("intruder", "intruder")
    (theirs,) = json.loads(
        kmip.admin(
            "uid = client.create(enums.CryptographicAlgorithm.AES, 256)\n"
            "client.activate(uid)\nprint(json.dumps([uid]))",
            cert=cert,
            key=key,
        )
    )
    with pytest.raises(KMSConfigError, match="may not use it"):
        await build(make, kmip, theirs).open()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            # create() always adds encrypt and decrypt: register our own key material instead
            "from kmip.pie.objects import SymmetricKey\n"
            "uid = client.register(SymmetricKey(enums.CryptographicAlgorithm.AES, 256, "
            "os.urandom(32), masks=[enums.CryptographicUsageMask.ENCRYPT]))\n"
            "client.activate(uid)",
            "does not allow encrypt and decrypt",
        ),
        ("uid = client.create(enums.CryptographicAlgorithm.AES, 256)", "not in the Active state"),
        (
            "uid = client.create(enums.CryptographicAlgorithm.BLOWFISH, 128)\nclient.activate(uid)",
            "not an AES key",
        ),
    ],
)
async def test_unusable_key_is_refused(
    kmip: KmipServer, make: list[KMIPWrapper], script: str, message: str
) -> None:
    uid = kmip.admin(script + "\nprint(uid)").strip()
    with pytest.raises(KMSConfigError, match=message):
        await build(make, kmip, uid).open()


async def test_revoked_key_is_a_backend_error(kmip: KmipServer, make: list[KMIPWrapper]) -> None:
    (uid,) = kmip.create_keys(1)
    w = build(make, kmip, uid)
    wrapped = await w.wrap(b"r" * 32, b"")
    kmip.admin(
        f"client.revoke(enums.RevocationReasonCode.KEY_COMPROMISE, {uid!r})",
    )
    with pytest.raises(BackendError, match="KMIP Decrypt failed: PERMISSION_DENIED"):
        await w.unwrap(wrapped, b"")
    with pytest.raises(BackendError, match="KMIP Encrypt failed: PERMISSION_DENIED"):
        await w.wrap(b"r" * 32, b"")


async def test_concurrent_calls_share_one_connection(
    kmip: KmipServer, kmip_keys: list[str], wrapper: KMIPWrapper
) -> None:
    keys = [os.urandom(32) for _ in range(20)]
    wrapped = await asyncio.gather(*(wrapper.wrap(k, b"c") for k in keys))
    assert await asyncio.gather(*(wrapper.unwrap(x, b"c") for x in wrapped)) == keys


async def test_dropped_connection_is_reopened(wrapper: KMIPWrapper) -> None:
    wrapped = await wrapper.wrap(b"d" * 32, b"")
    # Simulate the server or a middlebox dropping an idle connection.
    sock = wrapper._sock  # a network failure has no public seam
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    assert await wrapper.unwrap(wrapped, b"") == b"d" * 32


# -- TLS ------------------------------------------------------------------------------------


async def test_server_name_is_checked(
    kmip: KmipServer, kmip_keys: list[str], make: list[KMIPWrapper]
) -> None:
    ok = build(make, kmip, kmip_keys[0], serverName="localhost")
    await ok.open()
    wrong = build(make, kmip, kmip_keys[0], serverName="kms.example")
    with pytest.raises(BackendError, match="SSLCertVerificationError"):
        await wrong.open()


async def test_server_from_another_ca_is_refused(
    kmip: KmipServer, kmip_keys: list[str], make: list[KMIPWrapper], tmp_path: Path
) -> None:
    other = KmipCA.create(tmp_path)
    with pytest.raises(BackendError, match="SSLCertVerificationError"):
        await build(make, kmip, kmip_keys[0], caFile=str(other.ca_path)).open()


async def test_client_certificate_from_another_ca_is_refused(
    kmip: KmipServer, kmip_keys: list[str], make: list[KMIPWrapper], tmp_path: Path
) -> None:
    cert, key = KmipCA.create(tmp_path).issue("stranger", "keybroker")
    w = build(make, kmip, kmip_keys[0], certFile=str(cert), keyFile=str(key))
    with pytest.raises(BackendError, match="KMIP GET_ATTRIBUTES failed"):
        await w.open()


async def test_unreachable_server(kmip: KmipServer, make: list[KMIPWrapper]) -> None:
    w = build(make, kmip, "1", port=str(servers.free_port()))
    with pytest.raises(BackendError, match="ConnectionRefusedError"):
        await w.open()


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(
    kmip: KmipServer, kmip_keys: list[str], fmt: WriteFormat
) -> None:
    uri = uri_for(kmip, kmip_keys[3])
    built = wrapper_from_uri(parse_uri(uri))
    assert isinstance(built, KMIPWrapper)
    await built.close()
    kms = from_uris(kms_uri=uri, storage_uri="storage://memory", write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 32) != first
    finally:
        await kms.close()


def test_bad_uri_fails_before_storage() -> None:
    with pytest.raises(KMSConfigError, match="kms://kmip: missing parameter"):
        from_uris(kms_uri="kms://kmip?host=h", storage_uri="storage://memory")


# -- hostile or broken servers --------------------------------------------------------------


def _encoded_response(data: bytes) -> bytes:
    """A well-formed Decrypt response, encoded by PyKMIP's own server-side classes."""
    from kmip.core import enums, primitives, utils
    from kmip.core.messages import contents, messages, payloads

    item = messages.ResponseBatchItem(
        operation=contents.Operation(enums.Operation.DECRYPT),
        result_status=contents.ResultStatus(enums.ResultStatus.SUCCESS),
        response_payload=payloads.DecryptResponsePayload(unique_identifier="1", data=data),
    )
    header = messages.ResponseHeader(
        protocol_version=contents.ProtocolVersion(1, 4),
        time_stamp=primitives.DateTime(0, enums.Tags.TIME_STAMP),
        batch_count=contents.BatchCount(1),
    )
    stream = utils.BytearrayStream()
    messages.ResponseMessage(response_header=header, batch_items=[item]).write(
        stream, enums.KMIPVersion.KMIP_1_4
    )
    return bytes(stream.buffer)


def test_response_decoder_reads_a_real_response(wrapper: KMIPWrapper) -> None:
    assert wrapper._decode("DECRYPT", _encoded_response(b"plain")).data == b"plain"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_responses_fail_only_with_backend_errors(wrapper: KMIPWrapper, data: Any) -> None:
    raw = bytearray(_encoded_response(b"p" * 32))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        out = wrapper._decode("DECRYPT", bytes(raw))
    except BackendError:
        return
    except Exception as exc:  # a KMIP failure status decoded from the damage is fine too
        assert type(exc).__name__ == "_Failed"
        return
    assert out is not None


@contextlib.contextmanager
def bogus_server(kmip: KmipServer, reply: bytes) -> Iterator[int]:
    """A TLS server (trusted by our CA) that answers every request with ``reply``."""
    cert, key = kmip.ca.issue("bogus", "127.0.0.1", server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # not KMIP at all
        b"\x42\x00\x7b\x01\xff\xff\xff\xff",  # claims a 4 GiB message
        b"\x42\x00\x7b\x01\x00\x00\x01\x00short",  # ends early
        b"",
    ],
)
async def test_bogus_server_is_a_backend_error(
    kmip: KmipServer, make: list[KMIPWrapper], reply: bytes
) -> None:
    with bogus_server(kmip, reply) as port:
        w = build(make, kmip, "1", port=str(port))
        with pytest.raises(BackendError, match="KMIP GET_ATTRIBUTES failed"):
            await w.open()
