"""What the key service's two APIs share: the audit record of one key operation
(:class:`KeyEvent`), the get-or-create decision both make (:func:`get_or_create`), and the
protocols through which they see the service that serves them (:class:`KeyBackend`) and the
server it runs in (:class:`Host`).

:mod:`~keybroker.keyservice.http` and :mod:`~keybroker.keyservice.grpc_server` import this
module, never :mod:`~keybroker.keyservice.service`, which builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from keybroker.errors import ProxyError
from keybroker.keyservice import policy
from keybroker.keyservice.errors import KeyNotFound
from keybroker.keyservice.keys import KeyStore
from keybroker.settings import Config, Endpoint, KeyPolicy

if TYPE_CHECKING:
    from keybroker.audit.trail import AuditLog
    from keybroker.context import RequestContext
    from keybroker.http.messages import Request, StreamResponse

__all__ = ["Host", "KeyBackend", "KeyEvent", "get_or_create"]


@dataclass
class KeyEvent:
    """The audit record of one key operation, filled in as the request is served."""

    api: str
    operation: str | None = None
    key_id: str | None = None
    prefix: str | None = None
    account: str | None = None
    client: str | None = None
    source_ip: str | None = None
    request_id: str | None = None
    decision: str = "allow"
    status: int = 200
    error_code: str | None = None

    def failed(self, exc: ProxyError) -> None:
        self.decision, self.status, self.error_code = "deny", exc.status, exc.code

    def fields(self) -> dict[str, object]:
        """The audit line's fields (``None`` values left out)."""
        return {"event": "key", **{k: v for k, v in asdict(self).items() if v is not None}}


async def get_or_create(
    store: KeyStore,
    p: KeyPolicy | None,
    key_id: str,
    size: int,
    event: KeyEvent,
    *,
    create: bool = True,
) -> tuple[bytes, bool]:
    """``(dek, created)`` for a caller held to key policy ``p`` — the one decision both APIs
    make (HTTP ``dek/{id}``, gRPC ``GetDataKey``): ``get`` for an existing id, ``create`` for
    a new one unless ``create`` is false (a plain read, which needs ``get``).  Raises
    ``Forbidden`` (the message names the operation only), ``KeyNotFound`` (a caller who may
    read but not create, or a plain read, of an id that does not exist)."""
    if not (policy.allows(p, "get", key_id) or policy.allows(p, "create", key_id)):
        policy.check(p, "get", key_id)
    dek = await store.lookup(key_id, size)
    if dek is not None:
        event.operation = "get"
        policy.check(p, "get", key_id)
        return dek, False
    if not create:
        event.operation = "get"
        policy.check(p, "get", key_id)
        raise KeyNotFound("no key with this id")
    event.operation = "create"
    if not policy.allows(p, "create", key_id):
        if policy.allows(p, "get", key_id):
            raise KeyNotFound("no key with this id")
        policy.check(p, "create", key_id)
    return await store.create(key_id, size), True


class Host(Protocol):
    """What the key service needs of the server it runs in (:class:`keybroker.proxy.app.Proxy`):
    its config, its audit log, a place to register an HTTP handler, and the proxy's own
    authentication of a signed request."""

    @property
    def config(self) -> Config: ...

    @property
    def audit(self) -> AuditLog | None: ...

    @property
    def services(
        self,
    ) -> dict[str, Callable[[Request, RequestContext], Awaitable[StreamResponse]]]: ...

    async def authenticate(
        self, request: Request, ctx: RequestContext, max_body: int | None = None
    ) -> tuple[Endpoint, bytes]: ...


class KeyBackend(Protocol):
    """What the HTTP and gRPC APIs need of the key service that serves them
    (:class:`keybroker.keyservice.service.KeyService`)."""

    @property
    def proxy(self) -> Host:
        """The server the service runs in (the HTTP API authenticates through it)."""
        ...

    @property
    def store(self) -> KeyStore:
        """The keys."""
        ...

    @property
    def kms_name(self) -> str:
        """The KMS's name, as the status route and the metrics tell it."""
        ...

    @property
    def grpc(self) -> object | None:
        """The gRPC server while it runs, else ``None``."""
        ...

    async def audit(self, event: KeyEvent) -> None:
        """Write ``event``'s audit line.  Raises ``ServiceUnavailable`` when an ``allow``
        cannot be recorded and the audit log fails closed."""
        ...
