"""Credential hygiene: proxy credentials that protect nothing are configuration problems.

* A proxy credential that shares its access key or a secret with a real credential (of any
  account) hands the real key to the platform: always refused.
* A secret shorter than :attr:`SecretRegistry.MIN_LENGTH` cannot be scrubbed from log lines
  (replacing every ``ab`` would destroy the logs): always refused, proxy or real.
* A weak proxy signing secret (``SecretKey``, ``ClientSecret``) — shorter than
  :data:`MIN_PROXY_SECRET_LENGTH` characters, fewer than :data:`MIN_DISTINCT_CHARACTERS`
  different characters, or one short unit repeated — can be found offline from a single
  captured request (the signature is an HMAC of known text): refused unless
  ``Security.AllowWeakProxySecrets`` is true (for key-proxy configs that must keep working
  unchanged until their secrets are rotated).

Messages name the field, never a value.
"""

from __future__ import annotations

from keybroker.config.problems import Problems
from keybroker.credentials import Credential
from keybroker.logs.redact import SecretRegistry
from keybroker.secret import Secret
from keybroker.settings import Endpoint

__all__ = [
    "MIN_DISTINCT_CHARACTERS",
    "MIN_PROXY_SECRET_LENGTH",
    "check_credential_hygiene",
    "weak_secret_reason",
]

MIN_PROXY_SECRET_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 6
#: the fields that key an HMAC (never sent): a weak one is found offline from one request
_SIGNING_KEYS = frozenset({"SecretKey", "ClientSecret"})
_FIELDS = (
    ("SecretKey", "secret_key"),
    ("AccessToken", "access_token"),
    ("ClientToken", "client_token"),
    ("ClientSecret", "client_secret"),
)


def weak_secret_reason(value: str) -> str | None:
    """Why ``value`` is too weak for a proxy secret, or ``None``."""
    if len(value) < MIN_PROXY_SECRET_LENGTH:
        return f"is too short: use at least {MIN_PROXY_SECRET_LENGTH} random characters"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS or _periodic(value):
        return "has too little entropy (few different characters or a repeated pattern)"
    return None


def _periodic(value: str) -> bool:
    """True if ``value`` is a unit of at most half its length repeated (``abcabcab``)."""
    n = len(value)
    return any(all(value[i] == value[i - p] for i in range(p, n)) for p in range(1, n // 2 + 1))


def _secrets(cred: object) -> list[tuple[str, str]]:
    if not isinstance(cred, Credential):
        return []
    out = []
    for name, attr in _FIELDS:
        value = getattr(cred, attr, None)
        if isinstance(value, Secret) and value:
            out.append((name, value.reveal()))
    return out


def _proxies(ep: Endpoint, path: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [(f"{path}.Credentials.Proxy", ep.proxy)]
    if isinstance(ep.additional_proxies, list):
        out += [
            (f"{path}.Credentials.AdditionalProxies[{i}]", c)
            for i, c in enumerate(ep.additional_proxies)
        ]
    return out


def check_credential_hygiene(endpoints: object, allow_weak: bool, p: Problems) -> None:
    """Add a problem for each reused, unscrubbable or (unless ``allow_weak``) weak secret.

    An endpoint that already has a problem (a missing or empty field) is checked once that
    is fixed."""
    if not isinstance(endpoints, list):
        return
    eps = [
        (path, ep)
        for path, ep in ((f"Endpoints[{i}]", ep) for i, ep in enumerate(endpoints))
        if isinstance(ep, Endpoint) and not any(_within(f, path) for f in p.failed)
    ]
    real_keys = {ep.real.access_key for _, ep in eps if isinstance(ep.real, Credential)}
    real_secrets = {v for _, ep in eps for _, v in _secrets(ep.real)}
    for path, ep in eps:
        for name, value in _secrets(ep.real):
            _scrubbable(p, f"{path}.Credentials.Real.{name}", value)
        for where, cred in _proxies(ep, path):
            _check_proxy(p, where, cred, real_keys, real_secrets, allow_weak)


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith((f"{parent}.", f"{parent}["))


def _scrubbable(p: Problems, path: str, value: str) -> bool:
    if len(value) < SecretRegistry.MIN_LENGTH:
        p.check(
            path,
            f"is shorter than {SecretRegistry.MIN_LENGTH} characters: "
            "too short to be kept out of the logs",
        )
        return False
    return True


def _check_proxy(
    p: Problems,
    where: str,
    cred: object,
    real_keys: set[str],
    real_secrets: set[str],
    allow_weak: bool,
) -> None:
    if isinstance(cred, Credential) and cred.access_key and cred.access_key in real_keys:
        p.check(f"{where}.AccessKey", "is a real credential's access key: make up another one")
    for name, value in _secrets(cred):
        path = f"{where}.{name}"
        if value in real_secrets:
            p.check(path, "is a real credential's secret: make up another one")
        elif _scrubbable(p, path, value) and not allow_weak and name in _SIGNING_KEYS:
            reason = weak_secret_reason(value)
            if reason is not None:
                p.check(path, f"{reason} (or set Security.AllowWeakProxySecrets: true)")
