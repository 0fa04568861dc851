"""The key service's HTTP API, driven by clients that sign like real platforms (botocore SigV4
for service ``kms``, the Volcengine SDK's signer) with PROXY credentials, against a running
keybroker with a local KEK and file storage."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import pytest

from keybroker.kms import from_uris
from tests.keyservice.helpers import KeyBroker, error_code


def _library_dek(kb: KeyBroker, key_id: str, size: int) -> bytes:
    async def get() -> bytes:
        kms = from_uris(kms_uri=kb.kms_uri, storage_uri=kb.storage_uri)
        try:
            return await kms.get_dek("key-" + key_id, size)
        finally:
            await kms.close()

    return asyncio.run(get())


def _plain(response_json: dict[str, object]) -> bytes:
    return base64.b64decode(str(response_json["plaintext"]))


def _new_id(prefix: str = "tenant-a/") -> str:
    return prefix + secrets.token_hex(6)


def test_get_creates_once_and_matches_the_library(kb: KeyBroker) -> None:
    key_id = _new_id()
    first = kb.call("GET", f"dek/{key_id}", query={"size": "32"})
    assert first.status_code == 200, first.text
    assert first.json()["created"] is True
    assert first.headers["Cache-Control"] == "no-store"
    again = kb.call("POST", f"dek/{key_id}", query={"size": "32"})
    assert again.status_code == 200
    assert again.json()["created"] is False
    dek = _plain(first.json())
    assert len(dek) == 32
    assert _plain(again.json()) == dek
    assert _library_dek(kb, key_id, 32) == dek


def test_volcengine_signed_request_gets_the_same_key(kb: KeyBroker) -> None:
    key_id = _new_id()
    aws = kb.call("GET", f"dek/{key_id}", query={"size": "24"})
    volc = kb.call("GET", f"dek/{key_id}", query={"size": "24"}, who="volc")
    assert volc.status_code == 200, volc.text
    assert _plain(volc.json()) == _plain(aws.json())
    wrong = kb.call("GET", f"dek/{key_id}", query={"size": "24"}, who="volc", secret="nope")
    assert wrong.status_code == 401
    assert error_code(wrong) == "Proxy.ValidateCredentialErr"


def test_default_size_is_32(kb: KeyBroker) -> None:
    response = kb.call("GET", f"dek/{_new_id()}")
    assert response.status_code == 200
    assert len(_plain(response.json())) == 32


def test_ids_are_distinct_and_case_sensitive(kb: KeyBroker) -> None:
    base = _new_id()
    lower = _plain(kb.call("GET", f"dek/{base}x").json())
    upper = _plain(kb.call("GET", f"dek/{base}X").json())
    assert lower != upper


@pytest.mark.parametrize("size", ["0", "100000", "-1", "abc", "65", ""])
def test_bad_sizes_are_400(kb: KeyBroker, size: str) -> None:
    response = kb.call("GET", f"dek/{_new_id()}", query={"size": size})
    assert response.status_code == 400
    assert error_code(response) == "Proxy.InvalidArgument"


def test_size_mismatch_with_the_stored_key_is_400(kb: KeyBroker) -> None:
    key_id = _new_id()
    assert kb.call("GET", f"dek/{key_id}", query={"size": "32"}).status_code == 200
    response = kb.call("GET", f"dek/{key_id}", query={"size": "16"})
    assert response.status_code == 400
    assert "is 32 bytes, not 16" in response.json()["ResponseMetadata"]["Error"]["Message"]


def test_unknown_id_is_404_for_a_reader_and_created_for_a_creator(kb: KeyBroker) -> None:
    key_id = _new_id()
    response = kb.call("GET", f"dek/{key_id}", who="reader")
    assert response.status_code == 404
    assert error_code(response) == "Proxy.KeyNotFound"
    assert kb.call("GET", f"dek/{key_id}", who="tenant-a").status_code == 200
    assert kb.call("GET", f"dek/{key_id}", who="reader").status_code == 200


def test_create_false_only_reads(kb: KeyBroker) -> None:
    key_id = _new_id()
    response = kb.call("GET", f"dek/{key_id}", query={"create": "false"})
    assert response.status_code == 404
    assert error_code(response) == "Proxy.KeyNotFound"


def test_create_false_never_creates_even_for_a_creator(kb: KeyBroker) -> None:
    """``create=false`` is a plain read: an account that may only create is refused it (as
    for a key that exists: no disclosure), and no key is made."""
    key_id = _new_id()
    response = kb.call("GET", f"dek/{key_id}", who="creator", query={"create": "false"})
    assert response.status_code == 403, response.text
    assert error_code(response) == "Proxy.Forbidden"
    response = kb.call("GET", f"dek/{key_id}", query={"create": "false"})
    assert response.status_code == 404  # still absent
    assert kb.call("GET", f"dek/{key_id}", who="creator").status_code == 200  # creates
    assert kb.call("GET", f"dek/{key_id}", who="creator").status_code == 403  # no 'get'


@pytest.mark.parametrize(
    ("who", "method", "path", "body"),
    [
        ("tenant-a", "GET", "dek/tenant-b/x", None),
        ("reader", "DELETE", "dek/tenant-a/x", None),
        ("reader", "POST", "generate", {"id": "tenant-a/x"}),
        ("nokeys", "GET", "dek/tenant-a/x", None),
        ("nokeys", "GET", "status", None),
        ("reader", "GET", "ids", None),
        ("tenant-a", "POST", "generate", {"id": "other/x"}),
    ],
)
def test_policy_denials_are_403(
    kb: KeyBroker, who: str, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = kb.call(method, path, who=who, body=body)
    assert response.status_code == 403, response.text
    assert error_code(response) == "Proxy.Forbidden"
    assert response.headers["X-Mcdn-Proxy-Status"] == "Failed"


def test_listing_outside_the_prefixes_is_403_and_inside_is_filtered(kb: KeyBroker) -> None:
    mine, theirs = _new_id("tenant-a/list-"), _new_id("tenant-b/list-")
    for key_id in (mine, theirs):
        assert kb.call("GET", f"dek/{key_id}").status_code == 200
    denied = kb.call("GET", "ids", who="tenant-a", query={"prefix": "tenant-b/"})
    assert denied.status_code == 403
    seen = kb.call("GET", "ids", who="tenant-a").json()
    assert mine in seen["ids"] and theirs not in seen["ids"]
    assert all(i.startswith("tenant-a/") for i in seen["ids"])
    everything = kb.call("GET", "ids", query={"prefix": "tenant-"}).json()["ids"]
    assert mine in everything and theirs in everything
    assert everything == sorted(everything)
    one = kb.call("GET", "ids", query={"prefix": "tenant-", "limit": "1"}).json()
    assert len(one["ids"]) == 1 and one["truncated"] is True


def test_generate_unwrap_rewrap_round_trip(kb: KeyBroker) -> None:
    key_id = _new_id()
    gen = kb.call("POST", "generate", body={"id": key_id, "size": 48}, who="tenant-a")
    assert gen.status_code == 200, gen.text
    dek, blob = _plain(gen.json()), gen.json()["blob"]
    assert len(dek) == 48
    opened = kb.call("POST", "unwrap", body={"id": key_id, "blob": blob}, who="tenant-a")
    assert opened.status_code == 200
    assert _plain(opened.json()) == dek
    rewrapped = kb.call("POST", "rewrap", body={"id": key_id, "blob": blob}, who="tenant-a")
    assert rewrapped.status_code == 200
    new_blob = rewrapped.json()["blob"]
    assert new_blob != blob
    again = kb.call("POST", "unwrap", body={"id": key_id, "blob": new_blob, "size": 48})
    assert _plain(again.json()) == dek
    # generate stores nothing
    assert kb.call("GET", f"dek/{key_id}", query={"create": "false"}).status_code == 404


def test_a_blob_is_bound_to_its_id(kb: KeyBroker) -> None:
    gen = kb.call("POST", "generate", body={"id": _new_id()}).json()
    other = kb.call("POST", "unwrap", body={"id": _new_id(), "blob": gen["blob"]})
    assert other.status_code == 400
    assert error_code(other) == "Proxy.InvalidArgument"
    raw = bytearray(base64.b64decode(gen["blob"]))
    raw[-1] ^= 1
    tampered = base64.b64encode(bytes(raw)).decode()
    bad = kb.call("POST", "unwrap", body={"id": gen["id"], "blob": tampered})
    assert bad.status_code == 400
    wrong_size = kb.call("POST", "unwrap", body={"id": gen["id"], "blob": gen["blob"], "size": 16})
    assert wrong_size.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"x"',
        b"\xff\xfe",
        b'{"id": "tenant-a/x", "size": NaN}',
        b'{"id": "tenant-a/x", "blob": "AAAA", "extra": 1}',
        b'{"blob": "AAAA"}',
        b'{"id": 5, "blob": "AAAA"}',
        b'{"id": "tenant-a/x", "blob": "not base64!"}',
        b'{"id": "tenant-a/x", "blob": ""}',
        b'{"id": "tenant-a/x", "blob": "AAAA", "size": true}',
        b'{"id": "", "blob": "AAAA"}',
        b"[" * 5000 + b"]" * 5000,
        b"",
    ],
)
def test_malformed_bodies_are_400(kb: KeyBroker, body: bytes) -> None:
    response = kb.call("POST", "unwrap", body=body)
    assert response.status_code == 400, response.text
    assert error_code(response) == "Proxy.InvalidArgument"


def test_body_over_the_route_limit_is_413(kb: KeyBroker) -> None:
    big = json.dumps({"id": "tenant-a/x", "size": 32, "pad": "x" * 5000}).encode()
    response = kb.call("POST", "generate", body=big)
    assert response.status_code == 413
    assert error_code(response) == "Proxy.PayloadTooLarge"
    with_body = kb.call("GET", "dek/tenant-a/x", body=b"{}")
    assert with_body.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "code"),
    [
        ("GET", "nothing-here", {}, 404, "Proxy.UnknownOperation"),
        ("GET", "status/extra", {}, 404, "Proxy.UnknownOperation"),
        ("PUT", "dek/tenant-a/x", {}, 405, "Proxy.MethodNotAllowed"),
        ("GET", "dek/", {}, 400, "Proxy.InvalidArgument"),
        ("GET", "dek/a//b", {}, 400, "Proxy.InvalidArgument"),
        ("GET", "dek/" + "x" * 300, {}, 400, "Proxy.InvalidArgument"),
        ("GET", "dek/tenant-a/x", {"colour": "red"}, 400, "Proxy.InvalidArgument"),
        ("GET", "dek/tenant-a/x", {"recreate": "yes"}, 400, "Proxy.InvalidArgument"),
        ("GET", "ids", {"limit": "0"}, 400, "Proxy.InvalidArgument"),
    ],
)
def test_bad_routes_and_arguments(
    kb: KeyBroker, method: str, path: str, query: dict[str, str], status: int, code: str
) -> None:
    response = kb.call(method, path, query=query)
    assert response.status_code == status, response.text
    assert error_code(response) == code


def test_unsigned_and_wrongly_signed_requests_are_401(kb: KeyBroker) -> None:
    import requests

    unsigned = requests.get(f"{kb.url}/_keybroker/kms/dek/tenant-a/x", timeout=10)
    assert unsigned.status_code == 401
    wrong = kb.call("GET", "dek/tenant-a/x", secret="not-the-secret")
    assert wrong.status_code == 401
    assert error_code(wrong) == "Proxy.ValidateCredentialErr"


def test_status(kb: KeyBroker) -> None:
    response = kb.call("GET", "status", who="tenant-a")
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "ok" and doc["kms"] == "local" and doc["stores_keys"] is True
    assert doc["max_dek_size"] == 64


def test_percent_encoded_ids(kb: KeyBroker) -> None:
    key_id = _new_id() + " é"
    quoted = "dek/" + key_id.replace(" ", "%20").replace("é", "%C3%A9")
    response = kb.call("GET", quoted)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == key_id
    assert _plain(response.json()) == _library_dek(kb, key_id, 32)


def _chunked_flood(kb: KeyBroker, headers: dict[str, str], path: str) -> tuple[bytes, float, int]:
    """A chunked 16 MiB body sent as fast as the server takes it, until an answer arrives; the
    answer, the seconds until the server closed the connection and the body bytes sent."""
    import select
    import socket
    import time
    from urllib.parse import urlsplit

    host, port = urlsplit(kb.url).hostname, urlsplit(kb.url).port
    head = f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    piece = b"%x\r\n%b\r\n" % (65536, b"{" * 65536)
    started, sent = time.monotonic(), 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(256):
                sock.sendall(piece)
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break  # answered: stop sending, read it
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer, time.monotonic() - started, sent


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_chunked_body_over_the_route_limit_is_413_while_it_streams(
    kb: KeyBroker, signed: bool
) -> None:
    """The route's 4 KiB bound holds while a chunked body streams: the answer comes after a
    few KiB, not after ``Http.MaxBodyBytes`` (nor after the whole body)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.keyservice.helpers import PREFIX

    path = f"{PREFIX}/generate"
    headers = {"Host": kb.url.split("//", 1)[1], "Content-Type": "application/json"}
    if signed:
        acct = kb.accounts["full"]
        req = AWSRequest(method="POST", url=kb.url + path, data=b"{}", headers=headers)
        SigV4Auth(Credentials(acct.access_key, acct.secret_key), "kms", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    answer, seconds, sent = _chunked_flood(kb, headers, path)
    assert seconds < 10 and sent < 8 * 1024 * 1024, (seconds, sent)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"Proxy.PayloadTooLarge" in answer and b"4096" in answer
