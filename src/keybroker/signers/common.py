"""Small pieces several vendor signers share: parsing, checks, header and time helpers.

Only logic that is the same for every caller lives here; a vendor detail stays in its module
(or is a parameter here, named for what it changes).  Parsing helpers take ``bad``, the
vendor's own ``MalformedSignature`` factory, so every message keeps its vendor prefix and
names the faulty field, never its value.

Percent-encoding of queries and paths is in :mod:`keybroker.signers.encoding`, the prepared
HMAC and the signing-key cache in :mod:`keybroker.signers.hmac_keys`; every name of
``__all__`` stays importable from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret, constant_time_equal
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest

__all__ = [
    "COMPACT_TIME",
    "COMPACT_TIME_FORMAT",
    "HEADER_NAME",
    "HEX64",
    "LOWER_HEX64",
    "PRINTABLE_ID",
    "V4_FIELDS",
    "Bad",
    "check_length",
    "claimed_sha256",
    "compact_time",
    "compact_utc",
    "host_name",
    "host_without_default_port",
    "media_type",
    "parse_signed_headers",
    "parse_utc",
    "pin_host",
    "require_equal",
    "require_signed_headers",
    "single_header",
    "split_auth_fields",
    "split_authorization",
    "split_v4_scope",
    "state_of",
    "swap_token_header",
]

#: Makes the vendor's ``MalformedSignature`` (its prefix added) from a message.
Bad = Callable[[str], MalformedSignature]

_T = TypeVar("_T")

#: A claimed body hash: 64 hex digits, either case (the SDKs differ).
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: A hex HMAC-SHA256 signature as every SDK writes it.
LOWER_HEX64 = re.compile(r"[0-9a-f]{64}")
#: An access key id: 1-256 printable ASCII characters.
PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,256}")
#: A lower-case header name (an RFC 9110 token).
HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~\-]{1,128}")
#: The fields of a V4-style ``Authorization`` header.
V4_FIELDS = ("Credential", "SignedHeaders", "Signature")
#: The date in a V4-style credential scope.
_SCOPE_DATE = re.compile(r"[0-9]{8}")
#: A region or service in a V4-style credential scope.
_SCOPE_PART = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: ``20240101T000000Z``, the time stamp of the V4-style schemes.
COMPACT_TIME = re.compile(r"[0-9]{8}T[0-9]{6}Z")
COMPACT_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


# --------------------------------------------------------------------------- state, checks


def state_of(auth: ParsedAuth, cls: type[_T], signer: str) -> _T:
    """``auth.state`` as ``cls``.  Raises ``TypeError`` when another parser made ``auth``."""
    if not isinstance(auth.state, cls):
        raise TypeError(f"ParsedAuth was not produced by {signer}.parse")
    return auth.state


def require_equal(expected: str | bytes, given: str | bytes) -> None:
    """Compare in constant time.  Raises the opaque ``SignatureMismatch`` when they differ."""
    if not constant_time_equal(expected, given):
        raise SignatureMismatch()


# --------------------------------------------------------------------------- host, content type


def host_without_default_port(host: str) -> str:
    """``host`` without a ``:80``/``:443`` suffix, whatever the scheme (as the SDKs sign it)."""
    name, sep, port = host.rpartition(":")
    if sep and port in ("80", "443"):
        return name
    return host


def host_name(host: str) -> str:
    """The lower-case host name of a Host value, without its port."""
    return host.rsplit(":", 1)[0].lower() if ":" in host else host.lower()


def media_type(req: SigningRequest) -> str:
    """The request's ``Content-Type`` without parameters, lower case (``""`` when absent)."""
    return req.headers.get("Content-Type", "").split(";")[0].strip().lower()


# --------------------------------------------------------------------------- parsing


def check_length(value: str, limit: int, bad: Bad, what: str = "Authorization") -> None:
    """Raises ``MalformedSignature`` when ``value`` is longer than ``limit`` characters."""
    if len(value) > limit:
        raise bad(f"{what} is longer than {limit} characters")


def split_auth_fields(
    text: str, names: tuple[str, ...], bad: Bad, *, strip_values: bool = False
) -> dict[str, str]:
    """``Name=value`` fields separated by ``,``: each of ``names`` exactly once, no other.

    Raises ``MalformedSignature``.
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, eq, content = part.strip().partition("=")
        if not eq or name not in names:
            expected = ", ".join(f"{n}=" for n in names)
            raise bad(f"Authorization fields must be {expected}")
        if name in fields:
            raise bad(f"Authorization has {name} twice")
        fields[name] = content.strip() if strip_values else content
    missing = [n for n in names if n not in fields]
    if missing:
        raise bad(f"Authorization lacks {', '.join(missing)}")
    return fields


def split_authorization(
    value: str,
    algorithm: str,
    names: tuple[str, ...],
    bad: Bad,
    *,
    limit: int,
    strip_values: bool = False,
) -> dict[str, str]:
    """The fields of ``<algorithm> Name=value, ...`` (length bounded first).

    Raises ``MalformedSignature``.
    """
    check_length(value, limit, bad)
    if not value.startswith(algorithm + " "):
        raise bad(f"Authorization must start with '{algorithm} '")
    return split_auth_fields(value[len(algorithm) + 1 :], names, bad, strip_values=strip_values)


def parse_signed_headers(
    value: str,
    bad: Bad,
    *,
    limit: int,
    pattern: re.Pattern[str] = HEADER_NAME,
    label: str = "SignedHeaders",
    allow_empty: bool = False,
) -> tuple[str, ...]:
    """The ``;``-separated header names of a signed-headers field, checked.

    Raises ``MalformedSignature`` for too many names, a bad name or a repeated one.
    """
    if value == "" and allow_empty:
        return ()
    names = tuple(value.split(";"))
    if len(names) > limit:
        raise bad(f"{label} lists more than {limit} headers")
    if any(not pattern.fullmatch(n) for n in names):
        raise bad(f"{label} must be lower-case header names separated by ';'")
    if len(set(names)) != len(names):
        raise bad(f"{label} lists a header twice")
    return names


def split_v4_scope(credential: str, terminal: str, bad: Bad) -> tuple[str, str, str, str]:
    """``(access key, date, region, service)`` of ``AK/YYYYMMDD/region/service/<terminal>``.

    Raises ``MalformedSignature`` naming the faulty part.
    """
    parts = credential.split("/")
    if len(parts) != 5:
        raise bad(
            f"Credential must be access-key/date/region/service/{terminal} "
            f"(5 parts separated by '/'), got {len(parts)} part(s)"
        )
    ak, date, region, service, last = parts
    if not PRINTABLE_ID.fullmatch(ak):
        raise bad("Credential access key is empty or has invalid characters")
    if not _SCOPE_DATE.fullmatch(date):
        raise bad("Credential date must be YYYYMMDD")
    if not _SCOPE_PART.fullmatch(region) or not _SCOPE_PART.fullmatch(service):
        raise bad("Credential region and service must be 1-64 characters of [A-Za-z0-9_.-]")
    if last != terminal:
        raise bad(f"Credential must end with '/{terminal}'")
    return ak, date, region, service


def single_header(req: SigningRequest, name: str, bad: Bad) -> str | None:
    """The one value of header ``name`` (``None`` when absent).  Raises
    ``MalformedSignature`` when it appears more than once."""
    values = req.headers.getall(name, [])
    if len(values) > 1:
        raise bad(f"{name} appears more than once")
    return values[0] if values else None


def require_signed_headers(req: SigningRequest, names: tuple[str, ...], bad: Bad) -> None:
    """Each signed header (``host`` aside) exactly once.  Raises ``MalformedSignature``."""
    for name in names:
        if name == "host":
            continue
        count = len(req.headers.getall(name, []))
        if count == 0:
            raise bad(f"signed header {name!r} is missing from the request")
        if count > 1:
            raise bad(f"signed header {name!r} appears more than once")


def parse_utc(
    value: str,
    what: str,
    bad: Bad,
    *,
    pattern: re.Pattern[str] = COMPACT_TIME,
    time_format: str = COMPACT_TIME_FORMAT,
    shape: str = "YYYYMMDDTHHMMSSZ",
) -> datetime:
    """A UTC time stamp in ``time_format``.  Raises ``MalformedSignature`` naming ``what``."""
    if not pattern.fullmatch(value):
        raise bad(f"{what} must be {shape}")
    try:
        if time_format == COMPACT_TIME_FORMAT:
            return compact_utc(value)
        return datetime.strptime(value, time_format).replace(tzinfo=UTC)
    except ValueError:
        raise bad(f"{what} is not a valid date and time") from None


def compact_utc(value: str) -> datetime:
    """``YYYYMMDDTHHMMSSZ`` (already matched by ``COMPACT_TIME``) as an aware UTC datetime,
    without ``strptime`` (which is slow).  Raises ``ValueError`` for an impossible date."""
    return datetime(
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[9:11]),
        int(value[11:13]),
        int(value[13:15]),
        tzinfo=UTC,
    )


def compact_time(when: datetime) -> str:
    """``when`` in UTC as ``strftime(COMPACT_TIME_FORMAT)`` writes it, without ``strftime``
    (which is slow)."""
    utc = when.astimezone(UTC)
    year = utc.year
    if year < 1000:  # strftime does not pad such a year: leave it to strftime
        return utc.strftime(COMPACT_TIME_FORMAT)
    return f"{year}{utc.month:02d}{utc.day:02d}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"


def claimed_sha256(req: SigningRequest, header: str) -> tuple[BodyPolicy, str | None]:
    """``CLAIMED_SHA256`` and the hash when ``header`` holds one 64-hex-digit value, else
    ``BUFFER`` (the body is hashed here)."""
    claimed = req.headers.getall(header, [])
    if len(claimed) == 1 and HEX64.fullmatch(claimed[0].strip()):
        return BodyPolicy.CLAIMED_SHA256, claimed[0].strip().lower()
    return BodyPolicy.BUFFER, None


# --------------------------------------------------------------------------- re-signing


def pin_host(req: SigningRequest) -> None:
    """Make a forwarded ``Host`` header name the host really sent to."""
    if "Host" in req.headers:
        # A copied client Host header would contradict the host we sign for.
        req.headers["Host"] = req.host


def swap_token_header(
    req: SigningRequest, header: str, token: Secret | None, names: set[str]
) -> None:
    """Replace the proxy credential's session token in ``header`` by ``token`` (or drop it),
    and keep the signed-header ``names`` in step."""
    req.headers.popall(header, None)
    names.discard(header.lower())
    if token:
        req.headers[header] = token.reveal()
        names.add(header.lower())
