"""The one exception tree of keybroker.

Every exception class of the package, where it is defined when not here (a ``(also X)``
names a built-in it subclasses as well, so a caller catching ``X`` keeps working)::

    Exception
    ├── KeybrokerError               base of every error keybroker raises on purpose
    │   ├── ConfigError              a config file or object is invalid (message names the field)
    │   ├── ProxyError               a request cannot be proxied (HTTP status + key-proxy code)
    │   │   ├── AccountNotFound      404 Proxy.CloudAccountNotFound
    │   │   ├── MalformedRequest     400 Proxy.MalformedRequest (bad header, URI, date, ...)
    │   │   ├── MalformedSignature   400 Proxy.MalformedSignature (unparsable Authorization)
    │   │   ├── SignatureMismatch    401 Proxy.ValidateCredentialErr (one opaque failure)
    │   │   ├── RequestExpired       401 Proxy.RequestExpired (outside the clock-skew window)
    │   │   ├── Replayed             401 Proxy.Replay (a signed request used a second time)
    │   │   ├── Forbidden            403 Proxy.Forbidden (destination or policy refused)
    │   │   ├── PayloadTooLarge      413 Proxy.PayloadTooLarge
    │   │   ├── HeadersTooLarge      431 Proxy.HeadersTooLarge
    │   │   ├── RequestTimeout       408 Proxy.RequestTimeout (a client too slow to send)
    │   │   ├── TooManyRequests      503 Proxy.TooManyRequests (account limit; Retry-After)
    │   │   ├── ServiceUnavailable   503 Proxy.ServiceUnavailable (a shared store is down)
    │   │   ├── UpstreamError        502 Proxy.NetworkErr
    │   │   ├── ReplayCacheUnavailable  503, replay.base: the replay cache cannot answer
    │   │   ├── InvalidArgument      400, keyservice.errors: bad id, size, JSON, query, blob
    │   │   ├── KeyNotFound          404, keyservice.errors: no key with this id
    │   │   ├── UnknownOperation     404, keyservice.errors: no route under the path prefix
    │   │   ├── MethodNotAllowed     405, keyservice.errors: the route has no such method
    │   │   ├── KeyDeleted           409, keyservice.errors: a tombstone (``?recreate=true``)
    │   │   └── NotSupported         501, keyservice.errors: the KMS cannot do this
    │   └── KMSError                 key management; the rest in kms.errors
    │       ├── KMSConfigError       (also ValueError) a KMS/storage URI or argument is invalid
    │       ├── DEKNotFound          (also KeyError) storage has no object for this id
    │       ├── DEKExists            a create-only put found the id stored (the loser re-reads)
    │       ├── IntegrityError       a stored blob failed authentication, is truncated, is bound
    │       │                        to another id/size, or cannot be unwrapped: one opaque error
    │       ├── BackendError         a cloud SDK / server call failed (the SDK error chained)
    │       └── MissingExtra         (also ImportError) an optional SDK is not installed; the
    │                                message names the extra ("install keybroker[gcp]")
    ├── UpstreamFailure              http.upstream: the upstream could not be reached (``kind``)
    │   └── Stale                    a pooled connection closed before any answer byte
    │       └── NotSent              ... found closed before any request byte was written
    ├── ClientIdentityError          keyservice.client_identity: a client certificate names no
    │                                one client
    ├── StartupFailed                server.listen: the proxy could not start
    ├── ValueError
    │   └── UnsafeFileError          private_files: a key or state file that is a link, not
    │                                ours, or readable by others
    └── OSError
        ├── DestinationRefused       http.netguard: a host resolved only to forbidden addresses
        └── ConnectionResetError
            └── ClientDisconnected   http.messages: the client left before its body ended

Private exceptions carry control flow inside one module and never leave it, so they are not
drawn: ``_UsageError`` (cli.init, cli.seal, cli.tryout), ``_TooDeep`` (config.yamlform),
``_HeadTooLarge`` and ``_BadHead`` (http.server), ``_DuplicateField`` (keyservice.http),
``_Failed`` (kms.backends.kmip), ``_BodyRejected`` (proxy.forwarding), ``_Unclassified``
(signers._aws_operation).  ``tests/test_errors_tree.py`` checks this drawing against the code.

Messages never contain a secret value: they name fields, never their contents.
"""

from __future__ import annotations

__all__ = [
    "AccountNotFound",
    "ConfigError",
    "Forbidden",
    "HeadersTooLarge",
    "KMSError",
    "KeybrokerError",
    "MalformedRequest",
    "MalformedSignature",
    "PayloadTooLarge",
    "ProxyError",
    "Replayed",
    "RequestExpired",
    "RequestTimeout",
    "ServiceUnavailable",
    "SignatureMismatch",
    "TooManyRequests",
    "UpstreamError",
]


class KeybrokerError(Exception):
    """Base of every error keybroker raises on purpose."""


class ConfigError(KeybrokerError):
    """A configuration is invalid; ``problems`` lists every issue found, one line each."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ProxyError(KeybrokerError):
    """A request the proxy refuses; ``status`` and ``code`` shape the key-proxy error JSON."""

    status: int = 500
    code: str = "Proxy.InternalError"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AccountNotFound(ProxyError):
    status = 404
    code = "Proxy.CloudAccountNotFound"


class MalformedRequest(ProxyError):
    status = 400
    code = "Proxy.MalformedRequest"


class MalformedSignature(ProxyError):
    status = 400
    code = "Proxy.MalformedSignature"


class SignatureMismatch(ProxyError):
    """The one opaque verification failure: never says which part differed."""

    status = 401
    code = "Proxy.ValidateCredentialErr"

    def __init__(self, message: str = "the request signature does not match") -> None:
        super().__init__(message)


class RequestExpired(ProxyError):
    status = 401
    code = "Proxy.RequestExpired"


class Replayed(ProxyError):
    status = 401
    code = "Proxy.Replay"


class Forbidden(ProxyError):
    status = 403
    code = "Proxy.Forbidden"


class PayloadTooLarge(ProxyError):
    status = 413
    code = "Proxy.PayloadTooLarge"


class HeadersTooLarge(ProxyError):
    status = 431
    code = "Proxy.HeadersTooLarge"


class RequestTimeout(ProxyError):
    status = 408
    code = "Proxy.RequestTimeout"


class TooManyRequests(ProxyError):
    status = 503
    code = "Proxy.TooManyRequests"


class ServiceUnavailable(ProxyError):
    status = 503
    code = "Proxy.ServiceUnavailable"


class UpstreamError(ProxyError):
    status = 502
    code = "Proxy.NetworkErr"


class KMSError(KeybrokerError):
    """Base of key-management errors (the subclasses are in ``keybroker.kms.errors``)."""
