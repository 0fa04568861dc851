"""Reading a SigV4 request's authentication: the ``Authorization`` header and its fields, the
request time, and the headers an aws-chunked body depends on.

:class:`SigV4State` is what :meth:`~keybroker.signers.sigv4.scheme.SigV4Scheme.parse` keeps
for verify and resign; the payload markers of ``x-amz-content-sha256`` are named here.  Errors raise
:class:`~keybroker.errors.MalformedSignature` with a message that names the faulty field, never
its value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict

from keybroker.errors import MalformedSignature
from keybroker.signers.base import ParsedAuth, SigningRequest
from keybroker.signers.common import compact_time, compact_utc
from keybroker.signers.sigv4.chunked import SIGNED_TRAILER, decoded_length
from keybroker.signers.sigv4.chunked_trailers import trailer_names

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "HEX64",
    "STREAMING_SIGNED",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "SigV4State",
    "check_ascii_headers",
    "parse_authorization",
    "parse_scope",
    "parse_signature",
    "parse_signed_headers",
    "parse_timestamp",
    "request_time",
    "streaming_state",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = (
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
_MAX_AUTH_LEN = 8192

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_PART = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ACCESS_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,128}")
_COMPONENT_NAME = re.compile(r"[A-Za-z-]{1,32}")
_AUTH_SEPARATOR = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class SigV4State:
    """What :meth:`SigV4Scheme.parse` keeps for verify/resign (``ParsedAuth.state``)."""

    timestamp: str  # the YYYYMMDDTHHMMSSZ string that went into the string to sign
    date_header: str  # "x-amz-date", "date", or "" for query auth
    signed_headers: tuple[str, ...]
    payload_line: str | None  # the claimed payload line; None: hash the body
    signature: str = field(default="", repr=False)  # lower-case hex; never printed
    # aws-chunked bodies: the announced trailers and decoded length
    trailers: tuple[str, ...] = ()
    decoded_length: int | None = None


# -- parsing ---------------------------------------------------------------------------------


def parse_authorization(value: str, algorithm: str = ALGORITHM) -> dict[str, str]:
    """Split an ``Authorization`` value into its ``Credential``/``SignedHeaders``/``Signature``.

    Commas and whitespace between components are both accepted, as AWS does.
    Raises ``MalformedSignature``.
    """
    if len(value) > _MAX_AUTH_LEN:
        raise MalformedSignature("Authorization header is too long")
    text = value.strip()
    rest = text[len(algorithm) :]
    if not text.startswith(algorithm) or (rest and rest[0] not in " \t,"):
        raise MalformedSignature(f"Authorization does not use {algorithm}")
    parts: dict[str, str] = {}
    for token in _AUTH_SEPARATOR.split(rest):
        if token:
            _add_component(parts, token)
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in parts:
            raise MalformedSignature(f"Authorization is missing {name}")
    return parts


def _add_component(parts: dict[str, str], token: str) -> None:
    name, sep, val = token.partition("=")
    if not sep:
        raise MalformedSignature("Authorization component without '='")
    if name not in ("Credential", "SignedHeaders", "Signature"):
        shown = f" {name!r}" if _COMPONENT_NAME.fullmatch(name) else ""
        raise MalformedSignature(f"unknown Authorization component{shown}")
    if name in parts:
        raise MalformedSignature(f"Authorization repeats {name}")
    parts[name] = val


def parse_timestamp(value: str, field_name: str = "X-Amz-Date") -> datetime:
    """``YYYYMMDD'T'HHMMSS'Z'`` -> aware UTC datetime.  Raises ``MalformedSignature``."""
    if not _TIMESTAMP_RE.fullmatch(value):
        raise MalformedSignature(f"{field_name} must look like 20240101T000000Z")
    try:
        return compact_utc(value)
    except ValueError:
        raise MalformedSignature(f"{field_name} is not a valid date and time") from None


def _parse_http_date(value: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise MalformedSignature("Date header is not a valid HTTP date") from None
    if parsed.tzinfo is None:
        # "-0000" (botocore's formatdate) is UTC with no claim about the sender's zone
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_scope(credential: str, timestamp: str, terminator: str) -> tuple[str, str, str]:
    """``AK/YYYYMMDD/region/service/aws4_request`` -> (access key, region, service)."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5:
        raise MalformedSignature("Credential must be AK/date/region/service/" + terminator)
    access_key, date, region, service, term = parts
    if not _ACCESS_KEY.fullmatch(access_key):
        raise MalformedSignature("Credential access key is empty or not printable ASCII")
    if date != timestamp[:8]:
        raise MalformedSignature("Credential scope date does not match the request date")
    if not _SCOPE_PART.fullmatch(region):
        raise MalformedSignature("Credential scope region is not valid")
    if not _SCOPE_PART.fullmatch(service):
        raise MalformedSignature("Credential scope service is not valid")
    if term != terminator:
        raise MalformedSignature(f"Credential scope must end with {terminator}")
    return access_key, region, service


def parse_signed_headers(value: str, *, in_query: bool) -> tuple[str, ...]:
    names = [n.lower() for n in value.split(";")]
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            raise MalformedSignature("SignedHeaders has an empty or invalid header name")
    if len(set(names)) != len(names):
        raise MalformedSignature("SignedHeaders lists a header twice")
    if "host" not in names:
        raise MalformedSignature("SignedHeaders must include host")
    if not in_query and "authorization" in names:
        raise MalformedSignature("SignedHeaders must not include authorization")
    return tuple(sorted(names))


def parse_signature(value: str) -> str:
    if not HEX64.fullmatch(value):
        raise MalformedSignature("Signature must be 64 hexadecimal digits")
    return value.lower()


def check_ascii_headers(req: SigningRequest, names: tuple[str, ...]) -> None:
    """Signed header values must be ASCII: other bytes have no agreed canonical form."""
    for name in names:
        values = [req.host] if name == "host" else req.headers.getall(name, [])
        for value in values:
            if not value.isascii():
                raise MalformedSignature(f"signed header {name!r} has a non-ASCII value")


def streaming_state(req: SigningRequest, auth: ParsedAuth, state: SigV4State) -> SigV4State:
    """Check the headers an aws-chunked body depends on.  Raises ``MalformedSignature``."""
    line = state.payload_line
    trailers = trailer_names(req.headers)
    declared = decoded_length(req.headers)
    if line in STREAMING_SIGNED:
        if auth.in_query:
            raise MalformedSignature("chunk-signed uploads must use the Authorization header")
        if declared is None:
            raise MalformedSignature("chunk-signed uploads need x-amz-decoded-content-length")
        if bool(trailers) != (line == SIGNED_TRAILER):
            raise MalformedSignature("x-amz-trailer goes with, and only with, a -TRAILER payload")
    return replace(state, trailers=trailers, decoded_length=declared)


def request_time(headers: CIMultiDict[str]) -> tuple[str, str, datetime]:
    """(header used, timestamp string, datetime): X-Amz-Date wins over Date, as in AWS."""
    amz = headers.getall("X-Amz-Date", [])
    if len(amz) > 1:
        raise MalformedSignature("X-Amz-Date is repeated")
    if amz:
        return "x-amz-date", amz[0].strip(), parse_timestamp(amz[0].strip())
    date = headers.getall("Date", [])
    if len(date) != 1:
        raise MalformedSignature("request has no X-Amz-Date (or Date) header")
    when = _parse_http_date(date[0])
    return "date", compact_time(when), when
