"""Wangsu (ChinaNetCenter / CDNetworks) API authentication, both documented schemes.

**API-key** (the scheme key-proxy supports): HTTP Basic over a signed date::

    Date: Thu, 17 May 2012 19:37:58 GMT
    Authorization: Basic base64( <user> ":" base64( HMAC(<apiKey>, <Date value>) ) )

The HMAC is HMAC-SHA1 in Wangsu's documentation; CDNetworks clients also use HMAC-SHA256.
The two are told apart by the length of the decoded password (20 or 32 bytes) and re-signing
keeps the client's choice.  ``x-cnc-date`` replaces ``Date`` when a client cannot set
``Date`` (documented); whichever carries the date is the one signed and refreshed.

The config's ``AccessKey`` is the Wangsu user name and ``SecretKey`` the API key.

Only the date is signed: not the method, path, query, host or body.  Within the proxy's
clock-skew window a captured Authorization can be replayed with *any* request of that user,
so deploy the proxy only behind TLS and keep the skew window short.

**AK/SK** (``CNC-HMAC-SHA256``, what ``wangsu-sdk-python`` signs)::

    x-cnc-accessKey: <AccessKey>
    x-cnc-timestamp: <unix seconds>
    Authorization: CNC-HMAC-SHA256 Credential=<AccessKey>, SignedHeaders=content-type;host,
                   Signature=hex(HMAC-SHA256(SecretKey, string to sign))

    string to sign = "CNC-HMAC-SHA256" \n timestamp \n hex(SHA256(canonical request))
    canonical request = METHOD \n path \n percent-decoded query \n
                        name:lower-cased value \n ... (each signed header) \n
                        signed headers \n hex(SHA256(body))

as the SDK builds it: the query is left out for POST and the body is hashed only for POST and
PUT (a POST's query and a DELETE's body are therefore not covered).  The timestamp becomes
``ParsedAuth.signed_at``; the proxy's skew window bounds replay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import ClassVar
from urllib.parse import unquote

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers.base import (
    BodyPolicy,
    ParsedAuth,
    SignerBase,
    SigningRequest,
    replay_identity,
)
from keybroker.signers.common import (
    LOWER_HEX64,
    V4_FIELDS,
    check_length,
    parse_signed_headers,
    pin_host,
    require_equal,
    single_header,
    split_auth_fields,
    state_of,
)

__all__ = ["AKSK_ALGORITHM", "SIGNER", "WangsuSigner", "aksk_canonical_request", "password"]

AKSK_ALGORITHM = "CNC-HMAC-SHA256"

DEFAULT_ENDPOINT = "https://open.chinanetcenter.com"
_DATE_HEADERS = ("x-cnc-date", "Date")
_MAX_AUTH_LEN = 1024
_DIGESTS = {20: "sha1", 32: "sha256"}
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_USER = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_RFC1123 = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


@dataclass(frozen=True, slots=True)
class _State:
    user: str
    digest: str  # "sha1" or "sha256"
    date_header: str
    date: str
    signature: bytes

    def __repr__(self) -> str:
        return f"_State(digest={self.digest!r}, date_header={self.date_header!r})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Wangsu signature: {message}")


def password(api_key: bytes, date: str, digest: str = "sha1") -> str:
    """The Basic password: ``base64(HMAC-<digest>(api_key, date))``."""
    mac = hmac.new(api_key, date.encode("utf-8"), getattr(hashlib, digest))
    return base64.b64encode(mac.digest()).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4:
        raise _bad(f"{what} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} is not base64") from None


def _split_basic(req: SigningRequest) -> tuple[str, bytes]:
    values = req.headers.getall("Authorization", [])
    if len(values) != 1:
        raise _bad("exactly one Authorization header is required")
    value = values[0]
    check_length(value, _MAX_AUTH_LEN, _bad)
    if not value.startswith("Basic "):
        raise _bad("Authorization must start with 'Basic '")
    raw = _b64decode(value[6:].strip(), "the Basic credential")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the Basic credential is not UTF-8") from None
    user, colon, secret = text.rpartition(":")
    if not colon or not _USER.fullmatch(user):
        raise _bad("the Basic credential must be user:password with a non-empty user")
    signature = _b64decode(secret, "the password")
    if len(signature) not in _DIGESTS:
        raise _bad("the password must be a base64 HMAC-SHA1 or HMAC-SHA256 of the date")
    return user, signature


def _date(req: SigningRequest) -> tuple[str, str, datetime]:
    for name in _DATE_HEADERS:
        values = req.headers.getall(name, [])
        if not values:
            continue
        if len(values) > 1:
            raise _bad(f"{name} appears more than once")
        value = values[0]
        if not _RFC1123.fullmatch(value):
            raise _bad(f"{name} must be an RFC 1123 date such as 'Thu, 17 May 2012 19:37:58 GMT'")
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise _bad(f"{name} is not a valid date") from None
        return name, value, when.astimezone(UTC)
    raise _bad("the Date (or x-cnc-date) header is missing")


# --------------------------------------------------------------------------- AK/SK scheme

_AK_HEADER = "x-cnc-accessKey"
_TS_HEADER = "x-cnc-timestamp"
_TIMESTAMP = re.compile(r"[0-9]{1,11}")  # up to year 5138: datetime cannot go past 9999
_ACCESS_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,256}")  # printable ASCII except ','
_MAX_SIGNED_HEADERS = 32


@dataclass(frozen=True, slots=True)
class _AkSkState:
    access_key: str
    timestamp: str
    signed_headers: tuple[str, ...]
    signature: str

    def __repr__(self) -> str:
        return f"_AkSkState(signed_headers={self.signed_headers!r})"


def aksk_canonical_request(
    req: SigningRequest, signed_headers: tuple[str, ...], body: bytes | None
) -> str:
    """The canonical request of the ``CNC-HMAC-SHA256`` scheme, as the vendor SDK builds it."""
    method = req.method.upper()
    query = "" if method == "POST" else unquote(req.query)
    lines = []
    for name in signed_headers:
        value = req.host if name == "host" else (req.headers.get(name) or "")
        lines.append(f"{name}:{value.lower()}\n")
    payload = body if method in ("POST", "PUT") and body else b""
    return "\n".join(
        [
            method,
            req.path,
            query,
            "".join(lines),
            ";".join(signed_headers),
            hashlib.sha256(payload).hexdigest(),
        ]
    )


def _aksk_signature(secret: bytes, timestamp: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    to_sign = f"{AKSK_ALGORITHM}\n{timestamp}\n{digest}"
    return hmac.new(secret, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _aksk_fields(value: str) -> dict[str, str]:
    check_length(value, _MAX_AUTH_LEN, _bad)
    return split_auth_fields(value[len(AKSK_ALGORITHM) + 1 :], V4_FIELDS, _bad)


def _parse_aksk(req: SigningRequest, value: str) -> ParsedAuth:
    fields = _aksk_fields(value)
    access_key = fields["Credential"]
    if not _ACCESS_KEY.fullmatch(access_key):
        raise _bad("Credential is empty or has invalid characters")
    header_key = single_header(req, _AK_HEADER, _bad)
    if header_key is not None and header_key != access_key:
        raise _bad(f"{_AK_HEADER} and the Credential differ")
    names = parse_signed_headers(fields["SignedHeaders"], _bad, limit=_MAX_SIGNED_HEADERS)
    if not LOWER_HEX64.fullmatch(fields["Signature"]):
        raise _bad("Signature must be 64 lower-case hex digits")
    timestamp = single_header(req, _TS_HEADER, _bad)
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        raise _bad(f"{_TS_HEADER} must be the signing time in Unix seconds")
    for name in names:
        single_header(req, name, _bad)
    when = datetime.fromtimestamp(int(timestamp), UTC)
    state = _AkSkState(access_key, timestamp, names, fields["Signature"])
    return ParsedAuth(
        access_key=access_key,
        signed_at=when,
        body=BodyPolicy.BUFFER,
        state=state,
        signature=bytes.fromhex(fields["Signature"]),
    )


def _resign_aksk(
    req: SigningRequest, state: _AkSkState, cred: Credential, body: bytes | None, now: datetime
) -> None:
    timestamp = str(int(now.timestamp()))
    req.headers[_AK_HEADER] = cred.access_key
    req.headers[_TS_HEADER] = timestamp
    pin_host(req)
    canonical = aksk_canonical_request(req, state.signed_headers, body)
    signature = _aksk_signature(cred.secret_key.reveal_bytes(), timestamp, canonical)
    req.headers["Authorization"] = (
        f"{AKSK_ALGORITHM} Credential={cred.access_key}, "
        f"SignedHeaders={';'.join(state.signed_headers)}, Signature={signature}"
    )


# --------------------------------------------------------------------------- the signer


class WangsuSigner(SignerBase):
    """Wangsu / CDNetworks API-key (Basic + signed date) authentication."""

    vendor: ClassVar[str] = "wangsu"
    public_domains: ClassVar[tuple[str, ...]] = (
        ".chinanetcenter.com",
        ".wangsu.com",
        ".cdnetworks.com",
    )
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return "WangsuSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for ``CNC-HMAC-SHA256``, or for ``Basic`` whose password is a base64
        SHA-1/SHA-256 HMAC, with a date header.

        A plain user:password Basic header (any other API) is not claimed.
        """
        value = req.headers.get("Authorization", "")
        if value.startswith(AKSK_ALGORITHM + " "):
            return True
        if not value.startswith("Basic "):
            return False
        if not any(name in req.headers for name in _DATE_HEADERS):
            return False
        try:
            _split_basic(req)
        except MalformedSignature:
            return False
        return True

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse either scheme.  Raises ``MalformedSignature``."""
        values = req.headers.getall("Authorization", [])
        if len(values) == 1 and values[0].startswith(AKSK_ALGORITHM + " "):
            return _parse_aksk(req, values[0])
        user, signature = _split_basic(req)
        header, value, when = _date(req)
        state = _State(user, _DIGESTS[len(signature)], header, value, signature)
        # ParsedAuth.signature stays empty: this signature covers the date alone, so every
        # request of one second shares it; the replay key is the request's own spelling
        return ParsedAuth(access_key=user, signed_at=when, body=BodyPolicy.UNSIGNED, state=state)

    def replay_identity(self, req: SigningRequest, auth: ParsedAuth) -> bytes | None:
        """The default identity (:func:`~keybroker.signers.base.replay_identity`), plus the
        raw query of a ``CNC-HMAC-SHA256`` POST: the scheme does not sign it, and two POSTs of
        one body to two queries within a second are two requests, not a replay."""
        identity = replay_identity(self.vendor, auth)
        if identity is None or req.method.upper() != "POST":
            return identity
        query = req.query.encode("utf-8", "surrogateescape")
        return identity + len(query).to_bytes(4, "big") + query

    @staticmethod
    def _state(auth: ParsedAuth) -> _State | _AkSkState:
        if isinstance(auth.state, _AkSkState):
            return auth.state
        return state_of(auth, _State, "WangsuSigner")

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the HMAC with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        if isinstance(state, _AkSkState):
            require_equal(cred.access_key, state.access_key)
            canonical = aksk_canonical_request(req, state.signed_headers, body)
            expected = _aksk_signature(cred.secret_key.reveal_bytes(), state.timestamp, canonical)
            require_equal(expected, state.signature)
            return
        require_equal(cred.access_key, state.user)
        mac = hmac.new(
            cred.secret_key.reveal_bytes(),
            state.date.encode("utf-8"),
            getattr(hashlib, state.digest),
        )
        require_equal(mac.digest(), state.signature)

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign at ``now`` with ``cred``, in the client's scheme (same HMAC digest, same date
        header, same signed headers)."""
        state = self._state(auth)
        if isinstance(state, _AkSkState):
            _resign_aksk(req, state, cred, body, now)
            return
        date = format_datetime(now.astimezone(UTC), usegmt=True)
        req.headers[state.date_header] = date
        secret = password(cred.secret_key.reveal_bytes(), date, state.digest)
        basic = base64.b64encode(f"{cred.access_key}:{secret}".encode()).decode("ascii")
        req.headers["Authorization"] = f"Basic {basic}"

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """Wangsu's open API endpoint (CDNetworks accounts set ``Upstream``)."""
        return DEFAULT_ENDPOINT


SIGNER = WangsuSigner()
