"""Akamai {OPEN} EdgeGrid, ``EG1-HMAC-SHA256``.

::

    Authorization: EG1-HMAC-SHA256 client_token=akab-c...;access_token=akab-a...;
                   timestamp=20240101T00:00:00+0000;nonce=<uuid>;signature=<base64>

The signature is ``base64(HMAC-SHA256(signing_key, data))`` where ``signing_key`` is
``base64(HMAC-SHA256(client_secret, timestamp))`` (the base64 *text* is the key) and ``data``
joins with tabs: the method, the scheme, the Host, the path with ``;params`` and ``?query``
exactly as sent, the canonical signed headers, the content hash, and the Authorization value
up to and including the ``;`` before ``signature=``.

* The content hash is ``base64(sha256(body[:max_body]))`` for a non-empty POST body and empty
  otherwise: a PUT body, and the part of a POST body beyond ``max_body`` (131072 bytes by
  default), are not signed by the scheme.  The body is buffered (``BodyPolicy.BUFFER``) for
  POST only.
* ``headers_to_sign`` and ``max_body`` are client settings that the request does not carry;
  the defaults of the SDKs (no signed headers, 131072 bytes) are assumed unless an
  ``AkamaiSigner`` built with other values is registered.
* The credential is three values: ``client_token`` and ``access_token`` (identifiers, sent in
  clear in every request) and ``client_secret``.  The client token names the account.
* Each API client has its own host, ``akab-<id>.luna.akamaiapis.net``, and the host is part of
  the signature.  Natively addressed requests go to the host the client signed, but only if it
  is under ``.akamaiapis.net``; otherwise the account needs ``Upstream``.

Re-signing uses the proxy's clock and a fresh nonce, as the SDKs do for every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SignerBase, SigningRequest
from keybroker.signers.common import pin_host, state_of

__all__ = [
    "ALGORITHM",
    "MAX_BODY",
    "SIGNER",
    "AkamaiSigner",
    "canonical_headers",
    "content_hash",
    "data_to_sign",
]

ALGORITHM = "EG1-HMAC-SHA256"
MAX_BODY = 131072  # the SDKs' default max_body
PUBLIC_DOMAIN = ".akamaiapis.net"
_TIMESTAMP_FORMAT = "%Y%m%dT%H:%M:%S+0000"
_MAX_AUTH_LEN = 4096
_FIELDS = ("client_token", "access_token", "timestamp", "nonce")

_TIMESTAMP = re.compile(r"[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+0000")
_TOKEN = re.compile(r"[\x21-\x3a\x3c-\x7e]{1,256}")  # printable ASCII without ';'
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{43}=")
_HOSTNAME = re.compile(r"[a-z0-9.\-]{1,253}")
_WHITESPACE = re.compile(r"\s+")


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Akamai EdgeGrid signature: {message}")


def _b64_hmac(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode("ascii")


def content_hash(method: str, body: bytes | None, max_body: int = MAX_BODY) -> str:
    """The content hash the SDKs sign: only POST bodies, truncated to ``max_body``."""
    if method.upper() != "POST" or not body:
        return ""
    return base64.b64encode(hashlib.sha256(body[:max_body]).digest()).decode("ascii")


def canonical_headers(req: SigningRequest, headers_to_sign: tuple[str, ...]) -> str:
    """``name:value`` of each header to sign that is present, values trimmed with runs of
    whitespace folded to one space, joined by tabs."""
    return "\t".join(
        f"{name}:{_WHITESPACE.sub(' ', req.headers[name].strip())}"
        for name in headers_to_sign
        if name in req.headers
    )


def data_to_sign(
    req: SigningRequest,
    unsigned_auth: str,
    body: bytes | None,
    *,
    headers_to_sign: tuple[str, ...] = (),
    max_body: int = MAX_BODY,
) -> str:
    """The tab-joined string the signature covers."""
    target = req.path + (f"?{req.query}" if req.query else "")
    fields = [
        req.method.upper(),
        req.scheme,
        req.host,
        target,
        canonical_headers(req, headers_to_sign),
        content_hash(req.method, body, max_body),
    ]
    return "\t".join([*fields, unsigned_auth])


def _signature(client_secret: bytes, timestamp: str, data: str) -> str:
    signing_key = _b64_hmac(client_secret, timestamp.encode("utf-8"))
    return _b64_hmac(signing_key.encode("ascii"), data.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class _State:
    """The parsed header.  Never printed whole (the tokens identify the customer)."""

    client_token: str
    access_token: str
    timestamp: str
    unsigned: str  # the Authorization value up to and including the ';' before signature=
    signature: str

    def __repr__(self) -> str:
        return f"_State(timestamp={self.timestamp!r})"


def _fields(unsigned: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in unsigned[len(ALGORITHM) + 1 : -1].split(";"):
        name, eq, value = part.partition("=")
        if not eq or name not in _FIELDS:
            raise _bad("fields must be client_token=, access_token=, timestamp=, nonce=")
        if name in found:
            raise _bad(f"{name} appears twice")
        if not _TOKEN.fullmatch(value):
            raise _bad(f"{name} is empty or has invalid characters")
        found[name] = value
    missing = [n for n in _FIELDS if n not in found]
    if missing:
        raise _bad(f"Authorization lacks {', '.join(missing)}")
    return found


def _parse_timestamp(value: str) -> datetime:
    if not _TIMESTAMP.fullmatch(value):
        raise _bad("timestamp must be YYYYMMDDTHH:MM:SS+0000")
    try:
        return datetime.strptime(value, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad("timestamp is not a valid date and time") from None


class AkamaiSigner(SignerBase):
    """Akamai EdgeGrid ``EG1-HMAC-SHA256``.

    ``headers_to_sign`` and ``max_body`` are the client settings of the same names (they are
    not in the request; the SDK defaults are assumed); register an ``AkamaiSigner`` built with
    other values to change them.  ``nonce`` makes the nonce of re-signed requests (a fresh
    UUID4 by default; injectable so tests can compare with the SDK at the same nonce).
    Raises ``ValueError`` for a ``max_body`` below 1.
    """

    vendor: ClassVar[str] = "akamai"
    public_domains: ClassVar[tuple[str, ...]] = (PUBLIC_DOMAIN,)
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()
    credential_fields: ClassVar[tuple[str, ...]] = ("client_token", "access_token", "client_secret")

    def __init__(
        self,
        *,
        headers_to_sign: tuple[str, ...] = (),
        max_body: int = MAX_BODY,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        if max_body < 1:
            raise ValueError("max_body must be a positive number of bytes")
        self.headers_to_sign = tuple(h.lower() for h in headers_to_sign)
        self.max_body = max_body
        self._nonce = nonce or (lambda: str(uuid.uuid4()))

    def __repr__(self) -> str:
        return f"AkamaiSigner(headers_to_sign={self.headers_to_sign!r}, max_body={self.max_body})"

    def _data(self, req: SigningRequest, unsigned: str, body: bytes | None) -> str:
        return data_to_sign(
            req, unsigned, body, headers_to_sign=self.headers_to_sign, max_body=self.max_body
        )

    @staticmethod
    def credential_id(cred: Credential) -> str:
        """The client token: the identifier every request names its credential by."""
        return cred.client_token.reveal() if cred.client_token else ""

    def detect(self, req: SigningRequest) -> bool:
        """True for an Authorization header starting ``EG1-HMAC-SHA256 ``."""
        return req.headers.get("Authorization", "").startswith(ALGORITHM + " ")

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the Authorization header.  Raises ``MalformedSignature`` naming the field."""
        values = req.headers.getall("Authorization", [])
        if len(values) != 1:
            raise _bad("exactly one Authorization header is required")
        value = values[0]
        if len(value) > _MAX_AUTH_LEN:
            raise _bad(f"Authorization is longer than {_MAX_AUTH_LEN} characters")
        if not value.startswith(ALGORITHM + " "):
            raise _bad(f"Authorization must start with '{ALGORITHM} '")
        cut = value.rfind(";signature=")
        if cut < 0:
            raise _bad("Authorization must end with ';signature=<base64>'")
        unsigned, signature = value[: cut + 1], value[cut + len(";signature=") :]
        if not _SIGNATURE.fullmatch(signature):
            raise _bad("signature must be the base64 form of 32 bytes")
        fields = _fields(unsigned)
        signed_at = _parse_timestamp(fields["timestamp"])
        state = _State(
            fields["client_token"], fields["access_token"], fields["timestamp"], unsigned, signature
        )
        post = req.method.upper() == "POST"
        return ParsedAuth(
            access_key=fields["client_token"],
            signed_at=signed_at,
            body=BodyPolicy.BUFFER if post else BodyPolicy.UNSIGNED,
            state=state,
            signature=base64.b64decode(signature),
        )

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "AkamaiSigner")

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Check both tokens and the signature with ``cred``.  Raises ``SignatureMismatch``."""
        state = self._state(auth)
        ok = _same(cred.client_token, state.client_token)
        ok &= _same(cred.access_token, state.access_token)
        secret = cred.client_secret.reveal_bytes() if cred.client_secret else b""
        expected = _signature(secret, state.timestamp, self._data(req, state.unsigned, body))
        ok &= hmac.compare_digest(expected.encode(), state.signature.encode())
        if not ok or not secret:
            raise SignatureMismatch()

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place with ``cred`` at ``now`` and a fresh nonce, for the host and
        scheme really used.  Raises ``MalformedSignature`` if ``cred`` lacks a field."""
        self._state(auth)
        if not (cred.client_token and cred.access_token and cred.client_secret):
            raise _bad("the credential needs ClientToken, AccessToken and ClientSecret")
        timestamp = now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
        unsigned = (
            f"{ALGORITHM} client_token={cred.client_token.reveal()};"
            f"access_token={cred.access_token.reveal()};"
            f"timestamp={timestamp};nonce={self._nonce()};"
        )
        pin_host(req)
        data = self._data(req, unsigned, body)
        signature = _signature(cred.client_secret.reveal_bytes(), timestamp, data)
        req.headers["Authorization"] = f"{unsigned}signature={signature}"

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """The host the client signed, when it is an Akamai API host; else ``None`` (each
        API client has its own host, so there is no shared public endpoint)."""
        host = req.host.lower()
        name = host[: -len(":443")] if host.endswith(":443") else host
        if _HOSTNAME.fullmatch(name) and name.endswith(PUBLIC_DOMAIN) and ".." not in name:
            return f"https://{name}"
        return None


def _same(expected: Secret | None, given: str) -> bool:
    value = expected.reveal_bytes() if expected else b""
    return hmac.compare_digest(value, given.encode()) and bool(value)


SIGNER = AkamaiSigner()
