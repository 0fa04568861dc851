"""The checks of the ``KeyService`` section (:mod:`keybroker.keyservice`) and of key policies.

``KeyService``: its path prefix, DEK size bound, the ``kms://`` and ``storage://`` URIs (their
parameters checked without building anything) and the ``Grpc`` listener with its TLS files and
per-client policies; an endpoint's (or a gRPC client's) ``KeyPolicy``: key id prefixes and
operations.
"""

from __future__ import annotations

import re

from keybroker.config.problems import (
    Problems,
    address_problem,
    clip,
    is_type,
    readable_problem,
)
from keybroker.errors import KMSError
from keybroker.settings import (
    KEY_OPERATIONS,
    Config,
    GrpcClient,
    GrpcConfig,
    KeyPolicy,
    KeyServiceConfig,
)

__all__ = ["check_key_policy", "check_key_service", "key_policy_warnings"]

_PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def check_key_policy(kp: object, path: str, p: Problems) -> None:
    """An endpoint's or a gRPC client's ``KeyPolicy`` at ``path`` (``None`` is no policy)."""
    if kp is None or not is_type(p, path, kp, KeyPolicy, "a KeyPolicy or None"):
        return
    assert isinstance(kp, KeyPolicy)
    if not isinstance(kp.prefixes, list) or not all(isinstance(x, str) for x in kp.prefixes):
        p.check(f"{path}.Prefixes", "expected a list of key id prefixes")
    ops = kp.operations
    if not isinstance(ops, list) or not all(isinstance(x, str) for x in ops):
        p.check(f"{path}.Operations", "expected a list of operations")
        return
    known = ", ".join((*KEY_OPERATIONS, "*"))
    if not ops:
        p.check(f"{path}.Operations", f"name at least one operation ({known})")
    for i, op in enumerate(ops):
        if op != "*" and op not in KEY_OPERATIONS:
            p.check(f"{path}.Operations[{i}]", f"unknown operation '{clip(op)}' (known: {known})")


def key_policy_warnings(config: Config) -> list[str]:
    """Advice for a valid config (``keybroker check`` prints it; nothing is refused): a
    ``KeyPolicy`` prefix without a trailing ``/`` (``tenant-a`` also matches ``tenant-ab/...``)."""
    policies = [
        (f"Endpoints[{i}] ({ep.cloud_account_name}).KeyPolicy", ep.key_policy)
        for i, ep in enumerate(config.endpoints)
    ]
    clients = config.key_service.grpc.clients or []
    policies += [
        (f"KeyService.Grpc.Clients[{i}].KeyPolicy", c.key_policy) for i, c in enumerate(clients)
    ]
    warnings = []
    for path, policy in policies:
        for j, prefix in enumerate(policy.prefixes if policy is not None else []):
            if prefix and not prefix.endswith("/"):
                warnings.append(
                    f"{path}.Prefixes[{j}]: '{clip(prefix)}' has no trailing '/', so it also"
                    f" matches ids such as '{clip(prefix)}x/...' (write '{clip(prefix)}/'"
                    " unless that is meant)"
                )
    return warnings


def check_key_service(ks: object, p: Problems) -> None:
    """The ``KeyService`` section."""
    if not is_type(p, "KeyService", ks, KeyServiceConfig, "a KeyServiceConfig"):
        return
    assert isinstance(ks, KeyServiceConfig)
    if not is_type(p, "KeyService.Enabled", ks.enabled, bool, "a boolean") or not ks.enabled:
        return
    if problem := _path_prefix_problem(ks.path_prefix):
        p.check("KeyService.PathPrefix", problem)
    size = ks.max_dek_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 8160:
        p.check("KeyService.MaxDEKSize", "expected an integer from 1 to 8160 (bytes)")
    if ks.legacy_blobs not in ("off", "read"):
        p.check("KeyService.LegacyBlobs", "expected off (the default) or read")
    is_type(p, "KeyService.TrustedStore", ks.trusted_store, bool, "a boolean")
    if not isinstance(ks.kms, str) or not ks.kms:
        p.check("KeyService.KMS", "required when KeyService.Enabled is true (a kms:// URI)")
    elif not isinstance(ks.storage, str):
        p.check("KeyService.Storage", "expected a storage:// URI")
    else:
        for key, problem in _key_service_uri_problems(ks.kms, ks.storage):
            p.check(f"KeyService.{key}", problem)
    _check_grpc(ks.grpc, p)


def _path_prefix_problem(prefix: object) -> str | None:
    if not isinstance(prefix, str) or not _PATH_PREFIX.fullmatch(prefix.rstrip("/")):
        return "expected a path such as /_keybroker/kms (letters, digits and . _ ~ -)"
    if not prefix.lstrip("/").startswith("_"):
        # so the key service can never shadow a cloud API path in native mode
        return "the first path segment must start with '_' (such as /_keybroker/kms)"
    return None


def _key_service_uri_problems(kms: str, storage: str) -> list[tuple[str, str]]:
    """Parameter checks of the two URIs, without building anything (no file or network)."""
    from keybroker.kms import split_store_options
    from keybroker.kms.cluster import ClusterKMS
    from keybroker.kms.registry import load_storage_class, load_wrapper_class, validate_uri
    from keybroker.kms.uri import parse_uri

    out: list[tuple[str, str]] = []
    for key, uri, scheme in (("KMS", kms, "kms"), ("Storage", storage, "storage")):
        if not uri:
            continue
        try:
            parsed = parse_uri(uri)
            if parsed.scheme != scheme:
                out.append((key, f"expected a {scheme}:// URI, not {parsed.scheme}://"))
            elif (scheme, parsed.name) == ("kms", "cluster-kms"):
                ClusterKMS.validate_uri(parsed)
            elif (scheme, parsed.name) == ("storage", "no-store"):
                split_store_options(parsed)[0].check_known()
            else:
                if scheme == "storage":
                    parsed = split_store_options(parsed)[0]
                load = load_wrapper_class if scheme == "kms" else load_storage_class
                validate_uri(load(parsed), parsed)
        except KMSError as exc:  # our KMS messages name parameters, never their values
            out.append((key, str(exc)))
    return out


def _check_grpc(grpc: object, p: Problems) -> None:
    path = "KeyService.Grpc"
    if not is_type(p, path, grpc, GrpcConfig, "a GrpcConfig"):
        return
    assert isinstance(grpc, GrpcConfig)
    if not is_type(p, f"{path}.Enabled", grpc.enabled, bool, "a boolean") or not grpc.enabled:
        return
    if problem := address_problem(grpc.address):
        p.check(f"{path}.Address", problem)
    files: list[tuple[str, str]] = [("CertFile", grpc.cert_file), ("KeyFile", grpc.key_file)]
    if grpc.cert_file or grpc.key_file or grpc.client_ca_file:
        files += [("ClientCAFile", grpc.client_ca_file)] if grpc.client_ca_file else []
        for key, value in files:
            if not value or not isinstance(value, str):
                p.check(f"{path}.{key}", "required for TLS (CertFile and KeyFile go together)")
            elif problem := readable_problem(value):
                p.check(f"{path}.{key}", problem)
    if grpc.clients is not None:
        _check_grpc_clients(grpc, f"{path}.Clients", p)


def _check_grpc_clients(grpc: GrpcConfig, path: str, p: Problems) -> None:
    """``Clients``: a non-empty list of distinct common names with their key policies, only
    under mutual TLS (without a client certificate there is no name to look up)."""
    clients = grpc.clients
    if not isinstance(clients, list):
        p.check(path, "expected a list of GrpcClient")
        return
    names: dict[str, int] = {}
    for i, client in enumerate(clients):
        sub = f"{path}[{i}]"
        if not is_type(p, sub, client, GrpcClient, "a GrpcClient"):
            continue
        assert isinstance(client, GrpcClient)
        name = client.common_name
        if not isinstance(name, str) or not name:
            p.check(f"{sub}.CommonName", "expected a certificate common name")
        elif names.setdefault(name, i) != i:
            p.check(f"{sub}.CommonName", f"duplicate common name (also {path}[{names[name]}])")
        if client.key_policy is None:
            p.check(f"{sub}.KeyPolicy", "required (the operations and key ids of this client)")
        check_key_policy(client.key_policy, f"{sub}.KeyPolicy", p)
    # after the entries: a problem at this path hides the later ones below it
    if not clients:
        p.check(path, "name at least one client (or leave Clients out)")
    if not grpc.client_ca_file:
        p.check(
            path,
            "per-client key policies need mutual TLS: set KeyService.Grpc.ClientCAFile "
            "(with CertFile and KeyFile)",
        )
