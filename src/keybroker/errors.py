"""The one exception tree of keybroker.

::

    KeybrokerError
    ├── ConfigError                  a config file or object is invalid (message names the field)
    ├── ProxyError                   a request cannot be proxied (HTTP status + key-proxy code)
    │   ├── AccountNotFound          404 Proxy.CloudAccountNotFound
    │   ├── MalformedRequest         400 Proxy.MalformedRequest (bad header, URI, date, ...)
    │   ├── MalformedSignature       400 Proxy.MalformedSignature (Authorization cannot be parsed)
    │   ├── SignatureMismatch        401 Proxy.ValidateCredentialErr (one opaque failure)
    │   ├── RequestExpired           401 Proxy.RequestExpired (outside the clock-skew window)
    │   ├── Replayed                 401 Proxy.Replay (a signed request used a second time)
    │   ├── Forbidden                403 Proxy.Forbidden (destination or policy refused)
    │   ├── PayloadTooLarge          413 Proxy.PayloadTooLarge
    │   ├── HeadersTooLarge          431 Proxy.HeadersTooLarge
    │   ├── RequestTimeout           408 Proxy.RequestTimeout (a client too slow to send)
    │   ├── TooManyRequests          503 Proxy.TooManyRequests (account limit; Retry-After)
    │   ├── ServiceUnavailable       503 Proxy.ServiceUnavailable (a shared store is down)
    │   └── UpstreamError            502 Proxy.NetworkErr
    └── KMSError                     key management (see keybroker.kms.errors)

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
    """Base of key-management errors (see ``keybroker.kms.errors``)."""
