"""Constellation's key service over gRPC: ``kms.API/GetDataKey`` on its own port (grpc.aio).

The checks and messages are Constellation's, in its order: ``length`` 0 is
``INVALID_ARGUMENT "can't derive key with length zero"``, an empty ``data_key_id`` is
``INVALID_ARGUMENT "no data key ID specified"``, and the KMS is asked for ``"key-" + id``.
Ours on top: a length over ``KeyService.MaxDEKSize`` is ``INVALID_ARGUMENT`` (Constellation
lets a client ask for 4 GiB), a deleted id is ``FAILED_PRECONDITION``, a KMS that is down is
``UNAVAILABLE``, and other failures are ``INTERNAL`` with a generic message (Constellation
returns the KMS's error text).  Requests are bounded to 4 KiB.

Transport: plain gRPC, as Constellation's (bind it to a loopback or cluster-internal
address), or TLS with ``Grpc.CertFile``/``KeyFile``, mutual TLS with ``Grpc.ClientCAFile``.
Every call writes a key audit line (``api: "grpc"``) with the peer's address, under mutual
TLS its certificate's common name, and the decision.

Client names come from the peer certificate itself (:mod:`keybroker.keyservice.client_identity`):
a certificate without exactly one printable-ASCII common name is ``PERMISSION_DENIED`` (with or
without ``Grpc.Clients``); subject alternative names are ignored.

Callers: without ``Grpc.Clients`` anyone who reaches the port gets any key (Constellation's
behaviour).  With it (mutual TLS only), after the argument checks above a certificate whose
common name is not listed is ``PERMISSION_DENIED``, and a listed one is held to its
``KeyPolicy`` as the HTTP API's ``dek/{id}`` holds an account: ``get`` for an existing id,
``create`` for a new one, its prefixes matched against the ``data_key_id`` as sent (the
caller's id, without the ``key-`` the KMS sees, so one policy means the same in both APIs).
A denial is ``PERMISSION_DENIED`` with :mod:`~keybroker.keyservice.policy`'s message; a
caller granted only ``get`` who asks for a new id gets ``NOT_FOUND``, as over HTTP.

Needs ``grpcio`` and ``protobuf``: ``install keybroker[grpc]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from keybroker.errors import ConfigError, Forbidden, ProxyError, ServiceUnavailable
from keybroker.keyservice.client_identity import ClientIdentityError, common_name_of
from keybroker.keyservice.errors import InvalidArgument, KeyDeleted, KeyNotFound
from keybroker.keyservice.operations import KeyBackend, KeyEvent, get_or_create
from keybroker.kms.errors import MissingExtra
from keybroker.settings import GrpcConfig, KeyPolicy

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingExtra("the gRPC key service needs grpcio: install keybroker[grpc]") from exc

from keybroker.keyservice import proto

__all__ = ["MAX_REQUEST_BYTES", "GrpcKeyServer"]

log = logging.getLogger("keybroker.keyservice")

MAX_REQUEST_BYTES = 4096
_LENGTH_ZERO = "can't derive key with length zero"
_NO_ID = "no data key ID specified"
_NOT_LISTED = "this client certificate may not use the key service"

_CODES: dict[type[ProxyError], grpc.StatusCode] = {
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    KeyDeleted: grpc.StatusCode.FAILED_PRECONDITION,
    KeyNotFound: grpc.StatusCode.NOT_FOUND,
    ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class GrpcKeyServer:
    """The ``kms.API`` server of one key service."""

    def __init__(self, service: KeyBackend, config: GrpcConfig) -> None:
        self.service = service
        self.config = config
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        # by certificate common name; None: no per-client policies (Constellation's way)
        self._policies: dict[str, KeyPolicy] | None = None
        if config.clients is not None:
            self._policies = {c.common_name: c.key_policy for c in config.clients}

    async def start(self) -> None:
        """Listen on ``Grpc.Address``.  Raises ``ConfigError`` (cannot read the TLS files or
        bind the address, ``Grpc.Clients`` without mutual TLS)."""
        if self._policies is not None and not self.config.client_ca_file:
            raise ConfigError("KeyService.Grpc.Clients: per-client key policies need mutual TLS")
        # gRPC binds with SO_REUSEPORT, so the worker processes of one server share the port.
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        handler = grpc.unary_unary_rpc_method_handler(
            self._get_data_key,
            request_deserializer=proto.GetDataKeyRequest.FromString,
            response_serializer=_serialize,
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(proto.SERVICE, {proto.METHOD: handler})]
        )
        self.port = _bind(server, self.config)
        await server.start()
        self._server = server
        log.info("key service gRPC listening on port %d", self.port)

    async def stop(self, grace: float) -> None:
        """Stop; in-flight calls get ``grace`` seconds.  Idempotent."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)

    async def _get_data_key(
        self, request: proto.DataKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        refusal: Forbidden | None = None
        try:
            name = _common_name(context)
        except ClientIdentityError as exc:
            name, refusal = None, Forbidden(str(exc))
        event = KeyEvent("grpc", "get", client=name)
        event.source_ip = _peer_ip(context.peer())
        try:
            if refusal is not None:
                raise refusal
            dek = await self._serve(request, event, name)
        except ProxyError as exc:
            event.failed(exc)
            await self.service.audit(event)
            code = _CODES.get(type(exc), grpc.StatusCode.INTERNAL)
            details = exc.message if code is not grpc.StatusCode.INTERNAL else "internal error"
            await context.abort(code, details)
        except Exception:  # a KMS or storage outage: recorded, as the HTTP API does
            log.exception("key service gRPC call failed")
            event.failed(ProxyError("internal error"))
            await self.service.audit(event)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        try:
            await self.service.audit(event)
        except ProxyError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the audit log cannot be written")
        return proto.GetDataKeyResponse(data_key=dek)

    async def _serve(
        self, request: proto.DataKeyRequest, event: KeyEvent, name: str | None
    ) -> bytes:
        """Constellation's checks in its order, then ours; the DEK (created on first use)."""
        if request.length == 0:
            raise InvalidArgument(_LENGTH_ZERO)
        if not request.data_key_id:
            raise InvalidArgument(_NO_ID)
        store = self.service.store
        if request.length > store.max_dek_size:
            raise InvalidArgument(f"key length must be at most {store.max_dek_size} bytes")
        key_id = event.key_id = store.check_id(request.data_key_id)
        if self._policies is None:
            dek = await store.lookup(key_id, request.length)
            if dek is None:
                event.operation = "create"
                dek = await store.create(key_id, request.length)
            return dek
        p = _policy_of(self._policies, name)
        dek, _ = await get_or_create(store, p, key_id, request.length, event)
        return dek


def _policy_of(policies: dict[str, KeyPolicy], name: str | None) -> KeyPolicy:
    """The key policy of the certificate whose common name is ``name`` (matched exactly).
    Raises ``Forbidden`` (no certificate, or a name not in ``Grpc.Clients``)."""
    found = None if name is None else policies.get(name)
    if found is None:
        raise Forbidden(_NOT_LISTED)
    return found


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _bind(server: grpc.aio.Server, config: GrpcConfig) -> int:
    """Add the listening port (TLS when a certificate is configured).  Raises
    ``ConfigError``."""
    try:
        if config.cert_file or config.key_file:
            port = server.add_secure_port(config.address, _credentials(config))
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError as exc:  # grpc raises when the address cannot be bound
        raise ConfigError(f"KeyService.Grpc.Address: cannot listen: {exc}") from None
    if not port:
        raise ConfigError("KeyService.Grpc.Address: cannot listen on this address")
    return port


def _credentials(config: GrpcConfig) -> grpc.ServerCredentials:
    cert, key = _read(config, "CertFile"), _read(config, "KeyFile")
    ca = _read(config, "ClientCAFile") if config.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


_FILES = {"CertFile": "cert_file", "KeyFile": "key_file", "ClientCAFile": "client_ca_file"}


def _read(config: GrpcConfig, name: str) -> bytes:
    path = getattr(config, _FILES[name])
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"KeyService.Grpc.{name}: cannot read: {exc.strerror}") from None


def _common_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The one common name of the verified client certificate (mutual TLS), read from the
    certificate itself, or ``None`` without one.  Raises ``ClientIdentityError``."""
    pems = list(context.auth_context().get("x509_pem_cert", ()))
    if not pems:
        return None
    return common_name_of(pems[0])


def _peer_ip(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return host.strip("[]") or rest
    return peer[:256]
