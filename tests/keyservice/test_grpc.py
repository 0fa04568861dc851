"""Constellation's ``kms.API`` over gRPC, called by a client protoc generated from our
``kms.proto``: the same DEKs as the library and the HTTP API, Constellation's argument errors,
its known cluster-KMS answers, and TLS / mutual TLS with a test CA."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from keybroker.keyservice import proto
from keybroker.kms.strength import weakness
from keybroker.settings import GrpcConfig
from tests.keyservice.grpc_client import generate, get_data_key, library_dek, tls_channel
from tests.keyservice.helpers import KeyBroker, b64url, keybroker
from tests.keyservice.pki import Pki, make_pki
from tests.servers import free_port

VECTORS = Path(__file__).parents[1] / "vectors" / "constellation" / "cluster_kms.json"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType, Path]:
    return generate(tmp_path_factory.mktemp("kms-client"))


@pytest.fixture(scope="module")
def kb_grpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyBroker]:
    grpc_cfg = GrpcConfig(enabled=True, address=f"127.0.0.1:{free_port()}")
    with keybroker(tmp_path_factory.mktemp("grpc"), grpc=grpc_cfg) as running:
        yield running


def test_descriptor_in_code_is_the_proto_file(client: tuple[Any, Any, Path]) -> None:
    from google.protobuf import descriptor_pb2

    compiled = descriptor_pb2.FileDescriptorSet.FromString(client[2].read_bytes()).file[0]
    ours = proto.file_descriptor_proto()
    for fdp in (compiled, ours):
        fdp.ClearField("name")
        for message in fdp.message_type:
            for field in message.field:
                field.ClearField("json_name")
    assert ours == compiled
    assert compiled.package == "kms" and compiled.service[0].name == "API"


def test_same_deks_as_the_library_and_the_http_api(kb_grpc: KeyBroker, client: Any) -> None:
    assert kb_grpc.grpc_port is not None
    with grpc.insecure_channel(f"127.0.0.1:{kb_grpc.grpc_port}") as channel:
        first = get_data_key(client, channel, "same-1", 32)
        assert get_data_key(client, channel, "same-1", 32) == first
        other = get_data_key(client, channel, "same-2", 16)
    assert len(first) == 32 and len(other) == 16
    assert library_dek(kb_grpc, "same-1", 32) == first
    http = kb_grpc.call("GET", "dek/same-1", query={"size": "32"})
    assert base64.b64decode(http.json()["plaintext"]) == first
    # the module's key broker serves every test here: only this test's keys, in any test order
    mine = ("same-1", "same-2")
    events = [e for e in kb_grpc.key_events() if e["api"] == "grpc" and e.get("key_id") in mine]
    assert [(e["key_id"], e["operation"], e["decision"]) for e in events[:3]] == [
        ("same-1", "create", "allow"),
        ("same-1", "get", "allow"),
        ("same-2", "create", "allow"),
    ]
    assert events[0]["source_ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("key_id", "length", "message"),
    [
        ("disk", 0, "can't derive key with length zero"),
        ("", 32, "no data key ID specified"),
        ("", 0, "can't derive key with length zero"),
        ("disk", 65, "key length must be at most 64 bytes"),
        ("a//b", 32, "the key id must not start or end with '/' or contain '//'"),
    ],
)
def test_invalid_arguments(
    kb_grpc: KeyBroker, client: Any, key_id: str, length: int, message: str
) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{kb_grpc.grpc_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        get_data_key(client, channel, key_id, length)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


def test_a_deleted_key_is_failed_precondition(kb_grpc: KeyBroker, client: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{kb_grpc.grpc_port}") as channel:
        get_data_key(client, channel, "to-delete", 32)
        assert kb_grpc.call("DELETE", "dek/to-delete").status_code == 200
        with pytest.raises(grpc.RpcError) as caught:
            get_data_key(client, channel, "to-delete", 32)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    denied = [e for e in kb_grpc.key_events() if e["api"] == "grpc" and e["decision"] == "deny"]
    assert denied[-1]["key_id"] == "to-delete" and denied[-1]["error_code"] == "Proxy.KeyDeleted"


def test_oversized_requests_are_refused(kb_grpc: KeyBroker, client: Any) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{kb_grpc.grpc_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        get_data_key(client, channel, "x" * 10_000, 32)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def _cluster_vectors() -> list[dict[str, Any]]:
    """The vectors a key service accepts: the all-zero and all-0xff master secrets are refused
    as weak where a key is configured (tests/kms/test_cluster.py runs them on the library)."""
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
    return [v for v in vectors if weakness(bytes.fromhex(v["master_secret"])) is None]


@pytest.mark.parametrize("vector", _cluster_vectors(), ids=lambda v: v["id"])
def test_cluster_kms_known_answers(tmp_path: Path, client: Any, vector: dict[str, Any]) -> None:
    secret, salt = bytes.fromhex(vector["master_secret"]), bytes.fromhex(vector["salt"])
    kms_uri = f"kms://cluster-kms?key={b64url(secret)}&salt={b64url(salt)}"
    grpc_cfg = GrpcConfig(enabled=True, address=f"127.0.0.1:{free_port()}")
    with keybroker(
        tmp_path, kms_uri=kms_uri, storage_uri="storage://no-store", grpc=grpc_cfg
    ) as kb:
        with grpc.insecure_channel(f"127.0.0.1:{kb.grpc_port}") as channel:
            dek = get_data_key(client, channel, vector["id"].removeprefix("key-"), vector["size"])
        assert dek.hex() == vector["dek"]
        http = kb.call("GET", "dek/" + vector["id"].removeprefix("key-"))
        assert base64.b64decode(http.json()["plaintext"]).hex() == vector["dek"]
        unsupported = kb.call("DELETE", "dek/x")
        assert unsupported.status_code == 501
        assert kb.call("GET", "ids").status_code == 501


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_mutual_tls(tmp_path: Path, client: Any, pki: Pki) -> None:
    grpc_cfg = GrpcConfig(
        enabled=True,
        address=f"127.0.0.1:{free_port()}",
        cert_file=str(pki.server_cert),
        key_file=str(pki.server_key),
        client_ca_file=str(pki.ca),
    )
    with keybroker(tmp_path, grpc=grpc_cfg) as kb:
        assert kb.grpc_port is not None
        with tls_channel(kb.grpc_port, pki, pki.client_cert, pki.client_key) as channel:
            dek = get_data_key(client, channel, "tls-disk", 32)
        assert dek == library_dek(kb, "tls-disk", 32)
        for cert, key in ((None, None), (pki.other_client_cert, pki.other_client_key)):
            with tls_channel(kb.grpc_port, pki, cert, key) as channel:
                with pytest.raises(grpc.RpcError) as caught:
                    get_data_key(client, channel, "tls-disk", 32)
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        with (
            grpc.insecure_channel(f"127.0.0.1:{kb.grpc_port}") as channel,
            pytest.raises(grpc.RpcError),
        ):
            get_data_key(client, channel, "tls-disk", 32)
        event = next(e for e in kb.key_events() if e["api"] == "grpc")
        assert event["client"] == "platform-one"


def test_server_only_tls(tmp_path: Path, client: Any, pki: Pki) -> None:
    grpc_cfg = GrpcConfig(
        enabled=True,
        address=f"127.0.0.1:{free_port()}",
        cert_file=str(pki.server_cert),
        key_file=str(pki.server_key),
    )
    with keybroker(tmp_path, grpc=grpc_cfg) as kb:
        assert kb.grpc_port is not None
        with tls_channel(kb.grpc_port, pki, None, None) as channel:
            assert len(get_data_key(client, channel, "server-tls", 24)) == 24
