"""S3 Signature Version 2 (``Authorization: AWS AKID:signature`` and legacy presigned URLs
``?AWSAccessKeyId=…&Expires=…&Signature=…``), verified with the proxy secret and re-signed as
SigV4 with the real key.

Legacy tools still speak it: AWS CLI v1's ``aws s3 presign``, ``s3cmd signurl`` and s3cmd's
default header signing.  The string to sign is the one the S3 documentation defines
(botocore's ``HmacV1Auth`` / ``HmacV1QueryAuth`` build the same)::

    METHOD \\n Content-MD5 \\n Content-Type \\n Date (or Expires) \\n
    CanonicalizedAmzHeaders  CanonicalizedResource

``Date`` is empty when an ``x-amz-date`` header is present; the resource is ``/bucket/key``
(the bucket from a virtual-hosted Host) plus the sub-resources of the query, sorted.  The
signature is base64 of an HMAC-SHA1 with the secret key.

SigV2 names no region: the re-signed request is signed for the region in the Host
(``s3.<region>.amazonaws.com``, ``bucket.s3.<region>...``), else ``us-east-1``.  A presigned
URL may be valid for at most seven days (SigV4's limit); SigV2 of other AWS APIs
(``SignatureVersion=2`` query parameters) and ``AWS3`` signatures are refused with a message
that names the fix.  The replay key is the signature's decoded bytes
(``ParsedAuth.signature``), whatever spelling of the header or query carries it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.s3_address import s3_host_parts
from keybroker.signers.sigv4.canonical import decode_query, encode_component
from keybroker.signers.sigv4.parse import UNSIGNED_PAYLOAD, SigV4State, parse_timestamp
from keybroker.signers.sigv4.presign import MAX_EXPIRES

__all__ = [
    "SUB_RESOURCES",
    "SigV2State",
    "canonical_resource",
    "is_sigv2",
    "parse_sigv2",
    "refusal",
    "refuse_other_legacy",
    "string_to_sign",
    "to_sigv4",
    "verify_sigv2",
]

#: query parameters that are part of the resource (S3 docs, plus botocore's HmacV1Auth list)
SUB_RESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)
_QUERY_AUTH = frozenset({"AWSAccessKeyId", "Signature", "Expires"})
_SIGV4A = "AWS4-ECDSA-P256-SHA256"
_HEADER = re.compile(r"AWS ([\x21-\x39\x3b-\x7e]{1,128}):([A-Za-z0-9+/]{27}=)")
_DEFAULT_REGION = "us-east-1"
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_FIX = "configure the client for Signature Version 4 (s3cmd: signature_v2 = False; boto: s3v4)"


@dataclass(frozen=True, slots=True)
class SigV2State:
    """What :func:`parse_sigv2` keeps for verify and re-sign (``ParsedAuth.state``)."""

    signature: bytes = field(repr=False)  # the 20 decoded bytes of the HMAC-SHA1
    in_query: bool
    #: the Date lines a correct client may have signed, each with whether ``x-amz-date``
    #: then leaves the amz headers (the S3 guide's DELETE example moves it to the Date line)
    date_lines: tuple[tuple[str, bool], ...]
    expires_at: int | None = None  # query form: the absolute expiry (epoch seconds)


def is_sigv2(req: SigningRequest) -> bool:
    """True for ``Authorization: AWS …`` or a query with ``AWSAccessKeyId`` and ``Signature``."""
    if req.headers.get("Authorization", "").lstrip().startswith("AWS "):
        return True
    if "AWSAccessKeyId=" not in req.query or "Signature=" not in req.query:
        return False
    names = {k for k, _ in decode_query(req.query)}
    return {"AWSAccessKeyId", "Signature"} <= names


def refuse_other_legacy(req: SigningRequest) -> bool:
    """True for AWS schemes keybroker refuses by name (:func:`refusal` says which and why)."""
    return refusal(req) is not None


def refusal(req: SigningRequest) -> str | None:
    """Why an AWS signature scheme keybroker does not support is refused, with the fix."""
    auth = req.headers.get("Authorization", "").lstrip()
    if auth.startswith(("AWS3-HTTPS ", "AWS3 ")) or "X-Amzn-Authorization" in req.headers:
        return (
            "AWS Signature Version 3 (AWS3, AWS3-HTTPS) is not supported: "
            "configure the client for Signature Version 4"
        )
    if auth.startswith(_SIGV4A + " ") or f"X-Amz-Algorithm={_SIGV4A}" in req.query:
        return (
            "SigV4a (AWS4-ECDSA-P256-SHA256, multi-Region Access Points) is not supported: "
            "sign with SigV4 for one Region"
        )
    return None


def parse_sigv2(req: SigningRequest) -> ParsedAuth:
    """Parse header or query SigV2.  Raises ``MalformedSignature`` naming the field."""
    if "Authorization" in req.headers:
        return _parse_header(req)
    return _parse_query(req)


def _parse_header(req: SigningRequest) -> ParsedAuth:
    values = req.headers.getall("Authorization")
    if len(values) != 1:
        raise MalformedSignature("request has more than one Authorization header")
    match = _HEADER.fullmatch(values[0].strip())
    if match is None:
        raise MalformedSignature("Authorization must be 'AWS AccessKeyId:Signature' (SigV2)")
    access_key, sig = match.groups()
    amz_dates = req.headers.getall("x-amz-date", [])
    dates = req.headers.getall("Date", [])
    if len(amz_dates) > 1 or len(dates) > 1:
        raise MalformedSignature("the request repeats its Date or x-amz-date header")
    if amz_dates:
        # the S3 guide: an empty Date line, x-amz-date among the amz headers (s3cmd); its
        # DELETE example: x-amz-date's value as the Date line; botocore: the Date header
        signed_at = _http_date(amz_dates[0], "x-amz-date")
        lines = [("", False), (amz_dates[0].strip(), True)]
        lines += [(dates[0].strip(), False)] if dates else []
    elif dates:
        signed_at, lines = _http_date(dates[0], "Date"), [(dates[0].strip(), False)]
    else:
        raise MalformedSignature("a SigV2 request needs a Date or x-amz-date header")
    state = SigV2State(_decode_signature(sig), False, tuple(lines))
    return _auth(req, access_key, signed_at, None, state)


def _parse_query(req: SigningRequest) -> ParsedAuth:
    params: dict[str, str] = {}
    for key, val in decode_query(req.query):
        if key == "SignatureVersion":
            raise MalformedSignature(
                f"AWS query Signature Version 2 is supported for S3 only: {_FIX}"
            )
        if key in _QUERY_AUTH:
            if key in params:
                raise MalformedSignature(f"presigned request repeats {key}")
            params[key] = val
    for name in ("AWSAccessKeyId", "Signature", "Expires"):
        if not params.get(name):
            raise MalformedSignature(f"SigV2 presigned request is missing {name}")
    raw = params["Expires"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 11:
        raise MalformedSignature("Expires must be a time in seconds since 1970")
    expires_at = int(raw)
    sig = params["Signature"]  # '+' and '%2B' both decode to '+' (no form decoding)
    if not re.fullmatch(r"[A-Za-z0-9+/]{27}=", sig):
        raise MalformedSignature("Signature must be the base64 of an HMAC-SHA1")
    access_key = params["AWSAccessKeyId"]
    if not re.fullmatch(r"[\x21-\x7e]{1,128}", access_key):
        raise MalformedSignature("AWSAccessKeyId is empty or not printable ASCII")
    state = SigV2State(_decode_signature(sig), True, ((raw, False),), expires_at)
    # valid until Expires; at most MAX_EXPIRES ahead (later is "signed in the future")
    signed_at = datetime.fromtimestamp(max(expires_at - MAX_EXPIRES, 0), UTC)
    return _auth(req, access_key, signed_at, MAX_EXPIRES, state)


def _auth(
    req: SigningRequest,
    access_key: str,
    signed_at: datetime,
    expires: int | None,
    state: SigV2State,
) -> ParsedAuth:
    return ParsedAuth(
        access_key,
        signed_at,
        _region(req.host),
        "s3",
        body=BodyPolicy.UNSIGNED,  # SigV2 signs Content-MD5, which S3 checks, not the body
        in_query=state.in_query,
        expires=expires,
        state=state,
        signature=state.signature,  # the replay key: decoded, one value for every spelling
    )


def _http_date(value: str, name: str) -> datetime:
    value = value.strip()
    if re.fullmatch(r"\d{8}T\d{6}Z", value):
        return parse_timestamp(value, name)
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise MalformedSignature(f"{name} is not a valid HTTP date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _decode_signature(sig: str) -> bytes:
    try:
        return base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignature("Signature must be the base64 of an HMAC-SHA1") from None


def _region(host: str) -> str:
    """The region an S3 endpoint host names (``s3.eu-west-1``, ``s3-eu-west-1``,
    ``s3.dualstack.eu-west-1``), else ``us-east-1``."""
    parts = s3_host_parts(host)
    if parts is None:
        return _DEFAULT_REGION
    _, label, rest = parts
    for candidate in (rest.rsplit(".", 1)[-1], label.removeprefix("s3-")):
        if _REGION.fullmatch(candidate):
            return candidate
    return _DEFAULT_REGION


# -- verify ------------------------------------------------------------------------------------


def verify_sigv2(req: SigningRequest, auth: ParsedAuth, cred: Credential) -> None:
    """Recompute the SigV2 signature with ``cred``.  Raises ``SignatureMismatch``."""
    state = _state(auth)
    if not hmac.compare_digest(cred.access_key.encode(), auth.access_key.encode()):
        raise SignatureMismatch()
    _check_token(req, state, cred)
    key = cred.secret_key.reveal_bytes()
    matched = False
    for text in _candidates(req, state):
        expected = hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
        matched |= hmac.compare_digest(expected, state.signature)  # no early exit
    if not matched:
        raise SignatureMismatch()


def _check_token(req: SigningRequest, state: SigV2State, cred: Credential) -> None:
    if cred.access_token is None:
        return
    sent = _amz_headers(req, state).get("x-amz-security-token", "")
    if not hmac.compare_digest(
        sent.encode("utf-8", "surrogateescape"), cred.access_token.reveal_bytes()
    ):
        raise SignatureMismatch()


def _candidates(req: SigningRequest, state: SigV2State) -> list[str]:
    """The strings to sign a correct client may have used (the Date line variants).  The
    resource is the one S3 reads: ``/bucket`` from a virtual-hosted Host, then the path —
    never both readings, or a signature for one bucket would verify for another."""
    resource = canonical_resource(req.host, req.path, req.query)
    return [string_to_sign(req, state, resource, line, moved) for line, moved in state.date_lines]


def canonical_resource(host: str, path: str, query: str) -> str:
    """The CanonicalizedResource: ``/bucket/key`` (the bucket of a virtual-hosted ``host``,
    read by the S3 address parser routing uses) and the sub-resources of ``query``."""
    parts = s3_host_parts(host)
    bucket = parts[0] if parts is not None else None
    return _resource(f"/{bucket}{path}" if bucket else path, query)


def string_to_sign(
    req: SigningRequest, state: SigV2State, resource: str, date_line: str, moved: bool = False
) -> str:
    """The S3 documentation's StringToSign for ``req`` (``moved``: ``x-amz-date`` is the
    Date line, not an amz header)."""
    lines = [
        req.method.upper(),
        _header(req.headers, "Content-MD5"),
        _header(req.headers, "Content-Type"),
        date_line,
    ]
    amz = _amz_headers(req, state)
    if moved:
        amz.pop("x-amz-date", None)
    lines += [f"{name}:{amz[name]}" for name in sorted(amz)]
    return "\n".join(lines) + "\n" + resource


def _header(headers: CIMultiDict[str], name: str) -> str:
    return ",".join(v.strip() for v in headers.getall(name, []))


def _amz_headers(req: SigningRequest, state: SigV2State) -> dict[str, str]:
    """``x-amz-*`` headers (lower-case names, repeated values joined by ``,``); in a
    presigned URL, ``x-amz-*`` query parameters count as headers."""
    found: dict[str, list[str]] = {}
    for name, value in req.headers.items():
        lname = name.lower()
        if lname.startswith("x-amz-"):
            found.setdefault(lname, []).append(value.strip())
    if state.in_query:
        for name, value in decode_query(req.query):
            lname = name.lower()
            if lname.startswith("x-amz-") and lname not in found:
                found[lname] = [value.strip()]
    return {k: ",".join(v) for k, v in found.items()}


def _resource(path: str, query: str) -> str:
    subs = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if name in SUB_RESOURCES:
            subs.append((name, f"{name}={_unquote(value)}" if eq else name))
    if not subs:
        return path
    return path + "?" + "&".join(item for _, item in sorted(subs, key=lambda s: s[0]))


def _unquote(value: str) -> str:
    return dict(decode_query(f"v={value}")).get("v", value) if "%" in value else value


def _state(auth: ParsedAuth) -> SigV2State:
    if not isinstance(auth.state, SigV2State):
        raise TypeError("ParsedAuth was not produced by the S3 SigV2 parser")
    return auth.state


# -- re-sign as SigV4 --------------------------------------------------------------------------


def to_sigv4(req: SigningRequest, auth: ParsedAuth, timestamp: str, now: datetime) -> ParsedAuth:
    """Turn a verified SigV2 request into one the SigV4 re-signer signs: the SigV2
    authentication removed from ``req``, and the ``auth`` to re-sign with — its state a
    :class:`SigV4State` covering the headers SigV2 covered, the body unsigned (as it was: S3
    still checks a ``Content-MD5``)."""
    state = _state(auth)
    names = {"host"} | {
        n.lower()
        for n in req.headers
        if n.lower().startswith("x-amz-") or n.lower() in ("content-md5", "content-type")
    }
    names.discard("x-amz-security-token")  # the re-signer puts the real token (or none)
    if state.in_query:
        req.query = "&".join(
            f"{encode_component(k)}={encode_component(v)}"
            for k, v in decode_query(req.query)
            if k not in _QUERY_AUTH and k.lower() != "x-amz-security-token"
        )
        left = (state.expires_at or 0) - int(now.timestamp())
        auth = replace(auth, expires=min(max(left, 1), MAX_EXPIRES))
        sigv4 = SigV4State(timestamp, "", ("host",), UNSIGNED_PAYLOAD)
    else:
        req.headers.popall("Authorization", None)
        req.headers.popall("x-amz-date", None)
        req.headers["x-amz-content-sha256"] = UNSIGNED_PAYLOAD
        names |= {"x-amz-date", "x-amz-content-sha256"}
        sigv4 = SigV4State(timestamp, "x-amz-date", tuple(sorted(names)), UNSIGNED_PAYLOAD)
    return replace(auth, body=BodyPolicy.UNSIGNED, state=sigv4)
