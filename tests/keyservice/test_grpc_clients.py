"""Per-client key policies on the gRPC service (``KeyService.Grpc.Clients``, mutual TLS): a
real grpc.aio server with test-CA certificates, called by the protoc-generated client.

The decisions mirror the HTTP API's ``dek/{id}`` (``get`` for an existing id, ``create`` for a
new one, prefixes matched against the caller's ``data_key_id``); a certificate whose common
name is not listed is refused; without ``Clients`` every certificate of the CA is served."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from keybroker.errors import ConfigError
from keybroker.settings import GrpcClient, GrpcConfig, KeyPolicy
from tests.keyservice.grpc_client import generate, get_data_key, library_dek, tls_channel
from tests.keyservice.helpers import KeyBroker, keybroker
from tests.keyservice.pki import Pki, issue_client, make_pki
from tests.servers import free_port

TENANT_A = ["tenant-a/"]
CLIENTS = [
    GrpcClient("platform-one", KeyPolicy(prefixes=TENANT_A, operations=["get", "create"])),
    GrpcClient("reader", KeyPolicy(prefixes=TENANT_A, operations=["get"])),
    GrpcClient("creator", KeyPolicy(prefixes=TENANT_A, operations=["create"])),
    # the KMS sees "key-tenant-a/...", but prefixes are matched against the caller's id
    GrpcClient("kms-view", KeyPolicy(prefixes=["key-tenant-a/"], operations=["*"])),
    GrpcClient("everything", KeyPolicy(prefixes=[], operations=["*"])),
    GrpcClient("lister", KeyPolicy(prefixes=[], operations=["list", "status", "delete"])),
]
NO_GET = "the key policy does not allow 'get' on this key id"
NOT_LISTED = "this client certificate may not use the key service"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType, Path]:
    return generate(tmp_path_factory.mktemp("kms-client"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _mtls(pki: Pki, clients: list[GrpcClient] | None) -> GrpcConfig:
    return GrpcConfig(
        enabled=True,
        address=f"127.0.0.1:{free_port()}",
        cert_file=str(pki.server_cert),
        key_file=str(pki.server_key),
        client_ca_file=str(pki.ca),
        clients=clients,
    )


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[KeyBroker]:
    with keybroker(tmp_path_factory.mktemp("grpc-clients"), grpc=_mtls(pki, CLIENTS)) as running:
        for key_id in ("tenant-a/existing", "tenant-b/existing"):
            assert running.call("POST", f"dek/{key_id}", query={"size": "32"}).status_code == 200
        yield running


def _call(kb: KeyBroker, client: Any, pki: Pki, cn: str, key_id: str, n: int = 32) -> bytes:
    cert, key = (pki.client_cert, pki.client_key) if cn == "platform-one" else issue_client(pki, cn)
    assert kb.grpc_port is not None
    with tls_channel(kb.grpc_port, pki, cert, key) as channel:
        return get_data_key(client, channel, key_id, n)


def _refused(kb: KeyBroker, client: Any, pki: Pki, cn: str, key_id: str, n: int = 32) -> Any:
    with pytest.raises(grpc.RpcError) as caught:
        _call(kb, client, pki, cn, key_id, n)
    return caught.value


def _last_event(kb: KeyBroker, cn: str) -> dict[str, Any]:
    return [e for e in kb.key_events() if e["api"] == "grpc" and e.get("client") == cn][-1]


def test_a_listed_client_gets_and_creates_inside_its_prefixes(
    kb: KeyBroker, client: Any, pki: Pki
) -> None:
    created = _call(kb, client, pki, "platform-one", "tenant-a/disk-1")
    assert _call(kb, client, pki, "platform-one", "tenant-a/disk-1") == created
    assert library_dek(kb, "tenant-a/disk-1", 32) == created
    assert _call(kb, client, pki, "platform-one", "tenant-a/existing")
    events = [e for e in kb.key_events() if e.get("client") == "platform-one"][-3:]
    assert [(e["key_id"], e["operation"], e["decision"]) for e in events] == [
        ("tenant-a/disk-1", "create", "allow"),
        ("tenant-a/disk-1", "get", "allow"),
        ("tenant-a/existing", "get", "allow"),
    ]


@pytest.mark.parametrize("key_id", ["tenant-b/existing", "tenant-b/missing", "tenant-ab"])
def test_outside_the_prefixes_is_denied_without_telling_whether_the_id_exists(
    kb: KeyBroker, client: Any, pki: Pki, key_id: str
) -> None:
    error = _refused(kb, client, pki, "platform-one", key_id)
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_GET)
    event = _last_event(kb, "platform-one")
    assert (event["key_id"], event["operation"], event["decision"]) == (key_id, "get", "deny")
    assert (event["status"], event["error_code"]) == (403, "Proxy.Forbidden")


def test_get_only_reads_and_never_creates(kb: KeyBroker, client: Any, pki: Pki) -> None:
    assert _call(kb, client, pki, "reader", "tenant-a/existing") == library_dek(
        kb, "tenant-a/existing", 32
    )
    error = _refused(kb, client, pki, "reader", "tenant-a/never-made")
    # as the HTTP API answers an account that may read this id: it does not exist
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no key with this id")
    unknown = kb.call("GET", "dek/tenant-a/never-made", query={"create": "false"})
    assert unknown.status_code == 404
    event = _last_event(kb, "reader")
    assert (event["operation"], event["decision"], event["error_code"]) == (
        "create",
        "deny",
        "Proxy.KeyNotFound",
    )


def test_create_only_makes_new_ids_but_reads_none(kb: KeyBroker, client: Any, pki: Pki) -> None:
    assert len(_call(kb, client, pki, "creator", "tenant-a/fresh", 24)) == 24
    error = _refused(kb, client, pki, "creator", "tenant-a/existing")
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_GET)
    error = _refused(kb, client, pki, "creator", "tenant-b/fresh")
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_GET)
    events = [e for e in kb.key_events() if e.get("client") == "creator"][-3:]
    assert [(e["key_id"], e["operation"], e["decision"]) for e in events] == [
        ("tenant-a/fresh", "create", "allow"),
        ("tenant-a/existing", "get", "deny"),
        ("tenant-b/fresh", "get", "deny"),
    ]


def test_prefixes_apply_to_the_callers_id_not_the_kms_name(
    kb: KeyBroker, client: Any, pki: Pki
) -> None:
    error = _refused(kb, client, pki, "kms-view", "tenant-a/existing")
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_GET)
    assert _call(kb, client, pki, "kms-view", "key-tenant-a/x")  # its own id "key-tenant-a/x"
    assert _call(kb, client, pki, "everything", "tenant-b/existing") == library_dek(
        kb, "tenant-b/existing", 32
    )


def test_operations_other_than_get_and_create_grant_nothing(
    kb: KeyBroker, client: Any, pki: Pki
) -> None:
    for key_id in ("tenant-a/existing", "tenant-a/other"):
        error = _refused(kb, client, pki, "lister", key_id)
        assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NO_GET)


def test_an_unlisted_certificate_is_denied(kb: KeyBroker, client: Any, pki: Pki) -> None:
    for key_id in ("tenant-a/existing", "tenant-a/missing"):
        error = _refused(kb, client, pki, "platform-two", key_id)
        assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NOT_LISTED)
        event = _last_event(kb, "platform-two")
        assert (event["key_id"], event["decision"], event["status"]) == (key_id, "deny", 403)
        assert event["error_code"] == "Proxy.Forbidden" and event["source_ip"] == "127.0.0.1"
    # Constellation's argument checks come first, as for a listed client
    error = _refused(kb, client, pki, "platform-two", "tenant-a/existing", 0)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    # common names are matched exactly
    error = _refused(kb, client, pki, "Platform-One", "tenant-a/existing")
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NOT_LISTED)


def test_clients_without_mutual_tls_are_refused(tmp_path: Path, pki: Pki) -> None:
    grpc_cfg = _mtls(pki, CLIENTS[:1])
    grpc_cfg.client_ca_file = ""
    with pytest.raises(ConfigError) as caught, keybroker(tmp_path, grpc=grpc_cfg):
        pass
    assert caught.value.problems == [
        "KeyService.Grpc.Clients: per-client key policies need mutual TLS: "
        "set KeyService.Grpc.ClientCAFile (with CertFile and KeyFile)"
    ]


def test_without_clients_every_certificate_of_the_ca_gets_any_key(
    tmp_path: Path, client: Any, pki: Pki
) -> None:
    with keybroker(tmp_path, grpc=_mtls(pki, None)) as open_kb:
        for cn in ("platform-one", "platform-two"):
            assert len(_call(open_kb, client, pki, cn, "tenant-b/anything", 16)) == 16
        events = [e for e in open_kb.key_events() if e["api"] == "grpc"]
        assert [(e["client"], e["operation"], e["decision"]) for e in events] == [
            ("platform-one", "create", "allow"),
            ("platform-two", "get", "allow"),
        ]


def _cn(*values: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, v) for v in values])


def _long_cn() -> x509.Name:
    with warnings.catch_warnings():  # over X.520's 64 characters, on purpose
        warnings.simplefilter("ignore", UserWarning)
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p" * 65, _validate=False)])


_BAD_SUBJECTS: dict[str, x509.Name] = {
    "nul": _cn("platform-one\x00evil"),
    "nul-end": _cn("platform-one\x00"),
    "two-cns": _cn("platform-one", "evil"),
    "two-cns-same": _cn("platform-one", "platform-one"),
    "newline": _cn("platform-one\n"),
    "tab": _cn("platform-one\t"),
    "del": _cn("platform-one\x7f"),
    "non-ascii": _cn("platform-\u043ene"),  # a Cyrillic o
    "trailing-space": _cn("platform-one "),
    "no-cn": x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "platform-one")]),
    "empty-subject": x509.Name([]),
    "too-long": _long_cn(),
}


def _identity_refused(kb: KeyBroker, client: Any, pki: Pki, cert: Path, key: Path) -> Any:
    assert kb.grpc_port is not None
    with pytest.raises(grpc.RpcError) as caught, tls_channel(kb.grpc_port, pki, cert, key) as ch:
        get_data_key(client, ch, "tenant-a/existing", 32)
    return caught.value


@pytest.mark.parametrize("case", sorted(_BAD_SUBJECTS))
def test_a_certificate_without_exactly_one_printable_common_name_is_denied(
    kb: KeyBroker, client: Any, pki: Pki, case: str
) -> None:
    cert, key = issue_client(pki, _BAD_SUBJECTS[case], tag=f"bad-{case}")
    error = _identity_refused(kb, client, pki, cert, key)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "common name" in error.details()
    event = [e for e in kb.key_events() if e["api"] == "grpc"][-1]
    assert (event["decision"], event["status"], event.get("client")) == ("deny", 403, None)


def test_subject_alternative_names_do_not_name_a_client(
    kb: KeyBroker, client: Any, pki: Pki
) -> None:
    sans: list[x509.GeneralName] = [
        x509.DNSName("platform-one"),
        x509.UniformResourceIdentifier("spiffe://platform-one"),
    ]
    cert, key = issue_client(pki, x509.Name([]), tag="san-only", sans=sans)
    error = _identity_refused(kb, client, pki, cert, key)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    # with a common name, the SANs change nothing: the common name decides
    cert, key = issue_client(pki, _cn("platform-two"), tag="san-listed", sans=sans)
    error = _identity_refused(kb, client, pki, cert, key)
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, NOT_LISTED)
    cert, key = issue_client(pki, _cn("platform-one"), tag="cn-listed", sans=sans)
    assert kb.grpc_port is not None
    with tls_channel(kb.grpc_port, pki, cert, key) as channel:
        assert len(get_data_key(client, channel, "tenant-a/existing", 32)) == 32


def test_a_malformed_common_name_is_denied_without_clients_too(
    tmp_path: Path, client: Any, pki: Pki
) -> None:
    with keybroker(tmp_path, grpc=_mtls(pki, None)) as open_kb:
        for case in ("nul", "two-cns", "no-cn"):
            cert, key = issue_client(pki, _BAD_SUBJECTS[case], tag=f"open-{case}")
            error = _identity_refused(open_kb, client, pki, cert, key)
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED
