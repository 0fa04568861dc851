"""The key service's life cycle: its KMS, its HTTP handler on the proxy's port, its gRPC
server, and the audit line of every key operation.

:func:`attach` is what the proxy calls: with ``KeyService.Enabled`` it builds a
:class:`KeyService` and registers its HTTP handler under the first segment of
``KeyService.PathPrefix``; the proxy then awaits :meth:`KeyService.start` and
:meth:`KeyService.stop` with its own.

Audit: one line per key operation (``event: "key"``) with the API, operation, key id (or list
prefix), caller account, decision, status and error code — never key material (the audit log
itself refuses ``bytes`` and :class:`~keybroker.secret.Secret` values).  A key is released
only after its ``allow`` line is written: if the audit log cannot be written the caller gets
503 instead of the key.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from keybroker.errors import ConfigError, KMSError, ServiceUnavailable
from keybroker.keyservice.http import KeyServiceHTTP
from keybroker.keyservice.keys import KeyStore
from keybroker.keyservice.operations import Host, KeyEvent
from keybroker.kms import ExternalKMS, from_uris
from keybroker.kms.cluster import KEY_SERVICE_MIN_SALT
from keybroker.metrics import instruments as metrics
from keybroker.settings import KeyServiceConfig

if TYPE_CHECKING:
    from keybroker.keyservice.grpc_server import GrpcKeyServer

__all__ = ["KeyService", "attach", "build_store"]

log = logging.getLogger("keybroker.keyservice")


def build_store(config: KeyServiceConfig) -> KeyStore:
    """The key store the config names (no I/O but reading a local key file).

    Raises ``ConfigError`` naming ``KeyService.KMS`` (bad URI, missing SDK, bad key file)."""
    try:
        kms = from_uris(
            kms_uri=config.kms,
            storage_uri=config.storage or None,
            legacy_blobs="read" if config.legacy_blobs == "read" else "off",
            trusted_store=config.trusted_store is True,
            min_salt_bytes=KEY_SERVICE_MIN_SALT,
            observer=metrics.KMSOperations(),
        )
    except KMSError as exc:  # our KMS messages name parameters, never their values
        raise ConfigError(f"KeyService.KMS: {exc}") from None
    return KeyStore(kms, max_dek_size=config.max_dek_size)


class KeyService:
    """The key service of one proxy; see the module docstring."""

    def __init__(self, proxy: Host, config: KeyServiceConfig) -> None:
        """Raises ``ConfigError`` (see :func:`build_store`)."""
        self.proxy = proxy
        self.config = config
        self.store = build_store(config)
        self.http = KeyServiceHTTP(self, config.path_prefix)
        self.grpc: GrpcKeyServer | None = None

    @property
    def kms_name(self) -> str:
        kms = self.store.kms
        return kms.wrapper.name if isinstance(kms, ExternalKMS) else "cluster-kms"

    async def start(self) -> None:
        """Start the gRPC server if configured.  Raises ``ConfigError`` (it cannot listen),
        ``MissingExtra`` (grpcio is not installed)."""
        if not self.config.grpc.enabled:
            return
        # grpcio is an optional extra: imported only when the gRPC API is configured
        from keybroker.keyservice.grpc_server import GrpcKeyServer

        self.grpc = GrpcKeyServer(self, self.config.grpc)
        await self.grpc.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the gRPC server (in-flight calls get ``grace`` seconds), close the KMS."""
        try:
            if self.grpc is not None:
                await self.grpc.stop(grace)
                self.grpc = None
        finally:
            await self.store.close()

    async def audit(self, event: KeyEvent) -> None:
        """Write ``event``, durable per ``Audit.Sync`` before this returns (the fsync runs off
        the event loop).  A failed write of an ``allow`` raises ``ServiceUnavailable`` (the
        key must not go out unrecorded) unless ``Audit.FailClosed`` is false; of a ``deny``
        it is only logged."""
        self._count(event)
        audit_log = self.proxy.audit
        if audit_log is None or not audit_log.enabled:
            return
        try:
            await audit_log.commit(event.fields())  # durable before the key goes out
        except (OSError, ValueError, TypeError) as exc:
            metrics.DEFAULT.audit_failures.inc(("file",))
            log.error("key audit record failed: %s", type(exc).__name__)
            if event.decision == "allow" and audit_log.fail_closed:
                raise ServiceUnavailable(
                    "the audit log cannot be written: no key released"
                ) from None

    def _count(self, event: KeyEvent) -> None:
        """``keybroker_kms_operations_total`` for every key operation of either API (an
        external KMS counts its own get/create: not twice)."""
        operation = event.operation or "unknown"
        if operation in ("get", "create") and isinstance(self.store.kms, ExternalKMS):
            return
        outcome = "ok" if event.decision == "allow" else (event.error_code or "denied")
        metrics.kms_op(self.kms_name, operation, outcome)


def attach(proxy: Host) -> KeyService | None:
    """Build the key service of ``proxy.config`` and register its HTTP handler in
    ``proxy.services``; ``None`` when ``KeyService.Enabled`` is false.  Raises
    ``ConfigError``."""
    config = proxy.config.key_service
    if not config.enabled:
        return None
    service = KeyService(proxy, config)
    proxy.services[service.http.segment] = service.http.handle
    return service
