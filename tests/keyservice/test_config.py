"""The KeyService section, per-endpoint KeyPolicy and per-client gRPC policies
(``KeyService.Grpc.Clients``) in config.yml: read, checked, refused with exact problems."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keybroker.config.check import validate
from keybroker.config.loader import loads
from keybroker.errors import ConfigError
from keybroker.settings import Config, GrpcClient, GrpcConfig, KeyPolicy, KeyServiceConfig

ENDPOINT = """
Endpoints:
  - CloudAccountName: a
    Vendor: aws
    Credentials:
      Proxy: {AccessKey: AKIDPROXY1, SecretKey: proxy-secret-made-up-1}
      Real: {AccessKey: AKIDREAL1, SecretKey: real-secret-1}
    KeyPolicy: {Prefixes: ["tenant-a/"], Operations: [get, create, list]}
"""


def _config(key_service: str) -> str:
    return key_service + ENDPOINT


def test_reads_the_section_and_the_policy(tmp_path: Path) -> None:
    kek = tmp_path / "kek.bin"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    cfg = loads(
        _config(f"""
KeyService:
  Enabled: true
  PathPrefix: /_keybroker/kms
  KMS: "kms://local?keyFile={kek}"
  Storage: "storage://file?path={tmp_path}/deks"
  Grpc: {{Enabled: true, Address: "127.0.0.1:9000"}}
  MaxDEKSize: 48
""")
    )
    ks = cfg.key_service
    assert ks.enabled and ks.path_prefix == "/_keybroker/kms" and ks.max_dek_size == 48
    assert ks.kms.startswith("kms://local") and ks.storage.startswith("storage://file")
    assert ks.grpc.enabled and ks.grpc.address == "127.0.0.1:9000"
    assert cfg.endpoints[0].key_policy == KeyPolicy(["tenant-a/"], ["get", "create", "list"])


def test_absent_key_policy_is_none() -> None:
    cfg = loads(
        ENDPOINT.replace(
            '    KeyPolicy: {Prefixes: ["tenant-a/"], Operations: [get, create, list]}\n', ""
        )
    )
    assert cfg.endpoints[0].key_policy is None
    assert cfg.key_service.enabled is False


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("KeyService: {Enabled: true}", "KeyService.KMS: required when KeyService.Enabled is true"),
        (
            'KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=AA", PathPrefix: /kms}',
            "KeyService.PathPrefix: the first path segment must start with '_'",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=AA", PathPrefix: "/_a/?x"}',
            "KeyService.PathPrefix: expected a path",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=AA", MaxDEKSize: 0}',
            "KeyService.MaxDEKSize: expected an integer from 1 to 8160",
        ),
        (
            'KeyService: {Enabled: true, KMS: "storage://memory"}',
            "KeyService.KMS: expected a kms:// URI, not storage://",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://local?keyFil=x", Storage: "storage://memory"}',
            "KeyService.KMS: kms://local",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://nope", Storage: "storage://memory"}',
            "unknown key-wrapping backend",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=AA&salt=AA", '
            'Grpc: {Enabled: true, Address: "nowhere"}}',
            "KeyService.Grpc.Address: expected 'host:port'",
        ),
        (
            'KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=AA&salt=AA", '
            "Grpc: {Enabled: true, CertFile: /no/such/cert.pem}}",
            "KeyService.Grpc.KeyFile: required for TLS",
        ),
        ("KeyService: {Enabled: maybe}", "KeyService.Enabled: expected a boolean"),
        ("KeyService: {Colour: red}", "KeyService.Colour: unknown field"),
    ],
)
def test_problems_are_named(section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(_config(section + "\n"))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("{Operations: [get, steal]}", "KeyPolicy.Operations[1]: unknown operation 'steal'"),
        ("{Operations: []}", "KeyPolicy.Operations: name at least one operation"),
        ("{Prefixes: [a]}", "KeyPolicy.Operations: name at least one operation"),
        ("{Operations: [get], Colour: red}", "KeyPolicy.Colour: unknown field"),
    ],
)
def test_key_policy_problems(policy: str, problem: str) -> None:
    text = ENDPOINT.replace('{Prefixes: ["tenant-a/"], Operations: [get, create, list]}', policy)
    with pytest.raises(ConfigError) as caught:
        loads(text)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_secret_in_the_kms_uri_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        loads(
            _config('KeyService: {Enabled: true, KMS: "kms://cluster-kms?key=SUPERSECRET&bad=1"}\n')
        )
    assert "SUPERSECRET" not in str(caught.value)


CLUSTER_KMS = "kms://cluster-kms?key=AA&salt=AA"  # checked for its parameters only


def _grpc_section(tmp_path: Path, grpc: str) -> str:
    """A valid KeyService whose Grpc block is ``{Enabled: true, <grpc>}``; the TLS files
    ca.pem, cert.pem and key.pem exist in ``tmp_path`` (only their readability is checked)."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-")
    return _config(f"""
KeyService:
  Enabled: true
  KMS: "{CLUSTER_KMS}"
  Grpc: {{Enabled: true, {grpc}}}
""")


def _mtls(tmp_path: Path) -> str:
    d = tmp_path
    return f"CertFile: {d}/cert.pem, KeyFile: {d}/key.pem, ClientCAFile: {d}/ca.pem"


def test_reads_the_grpc_clients(tmp_path: Path) -> None:
    clients = (
        'Clients: [{CommonName: platform-one, KeyPolicy: {Prefixes: ["tenant-a/"], '
        "Operations: [get, create]}}, {CommonName: reader, KeyPolicy: {Operations: get}}]"
    )
    cfg = loads(_grpc_section(tmp_path, f"{_mtls(tmp_path)}, {clients}"))
    assert cfg.key_service.grpc.clients == [
        GrpcClient("platform-one", KeyPolicy(["tenant-a/"], ["get", "create"])),
        GrpcClient("reader", KeyPolicy([], ["get"])),
    ]
    for absent in (_mtls(tmp_path), f"{_mtls(tmp_path)}, Clients: null"):
        assert loads(_grpc_section(tmp_path, absent)).key_service.grpc.clients is None


MTLS_NEEDED = (
    "KeyService.Grpc.Clients: per-client key policies need mutual TLS: "
    "set KeyService.Grpc.ClientCAFile (with CertFile and KeyFile)"
)
ONE = "{CommonName: a, KeyPolicy: {Operations: [get]}}"


@pytest.mark.parametrize(
    ("grpc", "problem"),
    [
        (f"Clients: [{ONE}]", MTLS_NEEDED),
        (f"CertFile: CERT, KeyFile: KEY, Clients: [{ONE}]", MTLS_NEEDED),
        ("MTLS, Clients: []", "KeyService.Grpc.Clients: name at least one client"),
        ("MTLS, Clients: a", "KeyService.Grpc.Clients: expected a list, got a string"),
        (
            f"MTLS, Clients: [{ONE}, {ONE}]",
            "KeyService.Grpc.Clients[1].CommonName: duplicate common name "
            "(also KeyService.Grpc.Clients[0])",
        ),
        (
            "MTLS, Clients: [{KeyPolicy: {Operations: [get]}}]",
            "KeyService.Grpc.Clients[0].CommonName: required field is missing",
        ),
        (
            "MTLS, Clients: [{CommonName: ''}]",
            "KeyService.Grpc.Clients[0].CommonName: must not be empty",
        ),
        (
            "MTLS, Clients: [{CommonName: a}]",
            "KeyService.Grpc.Clients[0].KeyPolicy: required field is missing",
        ),
        (
            "MTLS, Clients: [{CommonName: a, KeyPolicy: {Operations: [get, steal]}}]",
            "KeyService.Grpc.Clients[0].KeyPolicy.Operations[1]: unknown operation 'steal'",
        ),
        (
            "MTLS, Clients: [{CommonName: a, KeyPolicy: {}}]",
            "KeyService.Grpc.Clients[0].KeyPolicy.Operations: name at least one operation",
        ),
        (
            "MTLS, Clients: [{CommonName: a, KeyPolicy: {Operations: [get]}, Role: x}]",
            "KeyService.Grpc.Clients[0].Role: unknown field",
        ),
        ("MTLS, Clients: [null]", "KeyService.Grpc.Clients[0]: empty entry"),
    ],
)
def test_grpc_client_problems(tmp_path: Path, grpc: str, problem: str) -> None:
    grpc = grpc.replace("MTLS", _mtls(tmp_path))
    grpc = grpc.replace("CERT", f"{tmp_path}/cert.pem").replace("KEY", f"{tmp_path}/key.pem")
    with pytest.raises(ConfigError) as caught:
        loads(_grpc_section(tmp_path, grpc))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_validate_refuses_clients_without_mutual_tls() -> None:
    policy = KeyPolicy(operations=["get"])
    grpc = GrpcConfig(enabled=True, clients=[GrpcClient("a", policy), GrpcClient("", policy)])
    cfg = Config(key_service=KeyServiceConfig(enabled=True, kms=CLUSTER_KMS, grpc=grpc))
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert caught.value.problems == [
        "KeyService.Grpc.Clients[1].CommonName: expected a certificate common name",
        MTLS_NEEDED,
    ]
    grpc.clients = None
    validate(cfg)
