"""The key service's errors: ``ProxyError`` subclasses, so the proxy renders them in
key-proxy's JSON shape (``{"ResponseMetadata": {"Error": {"Code", "Message"}, ...}}``); their
place in the one exception tree is drawn in :mod:`keybroker.errors`:

- ``InvalidArgument``: 400 Proxy.InvalidArgument (bad id, size, JSON, query, blob);
- ``KeyNotFound``: 404 Proxy.KeyNotFound (no key with this id);
- ``UnknownOperation``: 404 Proxy.UnknownOperation (no route under the path prefix);
- ``MethodNotAllowed``: 405 Proxy.MethodNotAllowed (the route exists, the method does not);
- ``KeyDeleted``: 409 Proxy.KeyDeleted (a tombstone; ``?recreate=true`` revives it);
- ``NotSupported``: 501 Proxy.NotSupported (the KMS cannot do this: cluster-kms stores
  nothing, so it cannot list, delete or wrap).

Policy denials are :class:`keybroker.errors.Forbidden` (403), bodies over a route's limit
:class:`keybroker.errors.PayloadTooLarge` (413), an unreachable key store
:class:`keybroker.errors.ServiceUnavailable` (503).  Messages name ids and sizes, never key
material.
"""

from __future__ import annotations

from keybroker.errors import ProxyError

__all__ = [
    "InvalidArgument",
    "KeyDeleted",
    "KeyNotFound",
    "MethodNotAllowed",
    "NotSupported",
    "UnknownOperation",
]


class InvalidArgument(ProxyError):
    status = 400
    code = "Proxy.InvalidArgument"


class KeyNotFound(ProxyError):
    status = 404
    code = "Proxy.KeyNotFound"


class UnknownOperation(ProxyError):
    status = 404
    code = "Proxy.UnknownOperation"


class MethodNotAllowed(ProxyError):
    status = 405
    code = "Proxy.MethodNotAllowed"


class KeyDeleted(ProxyError):
    status = 409
    code = "Proxy.KeyDeleted"


class NotSupported(ProxyError):
    status = 501
    code = "Proxy.NotSupported"
