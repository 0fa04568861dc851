"""Wangsu (ChinaNetCenter / CDNetworks) API-key authentication: HTTP Basic over a signed date.

::

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

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest

__all__ = ["SIGNER", "WangsuSigner", "password"]

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
    if len(value) > _MAX_AUTH_LEN:
        raise _bad(f"Authorization is longer than {_MAX_AUTH_LEN} characters")
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


class WangsuSigner:
    """Wangsu / CDNetworks API-key (Basic + signed date) authentication."""

    vendor: ClassVar[str] = "wangsu"
    public_domains: ClassVar[tuple[str, ...]] = (
        ".chinanetcenter.com",
        ".wangsu.com",
        ".cdnetworks.com",
    )

    def __repr__(self) -> str:
        return "WangsuSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for ``Basic`` whose password is a base64 SHA-1/SHA-256 HMAC, with a date header.

        A plain user:password Basic header (any other API) is not claimed.
        """
        if not req.headers.get("Authorization", "").startswith("Basic "):
            return False
        if not any(name in req.headers for name in _DATE_HEADERS):
            return False
        try:
            _split_basic(req)
        except MalformedSignature:
            return False
        return True

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the Basic credential and the date.  Raises ``MalformedSignature``."""
        user, signature = _split_basic(req)
        header, value, when = _date(req)
        state = _State(user, _DIGESTS[len(signature)], header, value, signature)
        return ParsedAuth(access_key=user, signed_at=when, body=BodyPolicy.UNSIGNED, state=state)

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        if not isinstance(auth.state, _State):
            raise TypeError("ParsedAuth was not produced by WangsuSigner.parse")
        return auth.state

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the HMAC of the date with ``cred``.  Raises ``SignatureMismatch``."""
        state = self._state(auth)
        if not hmac.compare_digest(cred.access_key.encode(), state.user.encode()):
            raise SignatureMismatch()
        mac = hmac.new(
            cred.secret_key.reveal_bytes(),
            state.date.encode("utf-8"),
            getattr(hashlib, state.digest),
        )
        if not hmac.compare_digest(mac.digest(), state.signature):
            raise SignatureMismatch()

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Set the date header to ``now`` and sign it with ``cred`` (same HMAC digest)."""
        state = self._state(auth)
        date = format_datetime(now.astimezone(UTC), usegmt=True)
        req.headers[state.date_header] = date
        secret = password(cred.secret_key.reveal_bytes(), date, state.digest)
        basic = base64.b64encode(f"{cred.access_key}:{secret}".encode()).decode("ascii")
        req.headers["Authorization"] = f"Basic {basic}"

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """Wangsu's open API endpoint (CDNetworks accounts set ``Upstream``)."""
        return DEFAULT_ENDPOINT


SIGNER = WangsuSigner()
