"""The Signature Version 4 core (``AWS4-HMAC-SHA256``), shared by every SigV4-style vendor.

:class:`SigV4Scheme` implements the whole :class:`~keybroker.signers.base.Signer` protocol
except ``native_upstream``; a vendor module subclasses it, names its vendor code and public
domains, and says which services keep the path raw (S3 does).  The canonical request is built
exactly as botocore's ``SigV4Auth``/``S3SigV4Auth`` and the AWS signing test suite expect::

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
    signed header names \\n payload hash

Chunked uploads (``x-amz-content-sha256: STREAMING-...``) are re-signed in two steps: ``resign``
signs the headers (the seed), and :meth:`SigV4Scheme.body_transformer` re-signs the chunks as
they stream (see :mod:`keybroker.signers._aws_chunked`).

Parsing errors raise :class:`~keybroker.errors.MalformedSignature` with a message that names the
faulty field, never its value; a wrong signature raises the opaque
:class:`~keybroker.errors.SignatureMismatch`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import ClassVar

from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers import _aws_chunked as chunked
from keybroker.signers._common import KeyCache, compact_time, compact_utc, prepared_hmac
from keybroker.signers._sigv4_canonical import (
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    decode_query,
    encode_component,
)
from keybroker.signers.base import BodyPolicy, BodyTransformer, ParsedAuth, SigningRequest

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_EXPIRES",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "SigV4Scheme",
    "SigV4State",
    "canonical_query",
    "canonical_uri",
    "parse_authorization",
    "parse_timestamp",
    "signature",
    "signing_key",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = (
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
MAX_EXPIRES = 604800  # seven days: AWS's limit for presigned URLs
_MAX_AUTH_LEN = 8192

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
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
    # aws-chunked bodies: the announced trailers and decoded length (from parse), the proxy
    # credential that verified the seed (from verify), the new seed signature (from resign)
    trailers: tuple[str, ...] = ()
    decoded_length: int | None = None
    proxy_cred: Credential | None = field(default=None, repr=False, compare=False)
    resigned_seed: str = field(default="", repr=False)


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


def _parse_scope(credential: str, timestamp: str, terminator: str) -> tuple[str, str, str]:
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


def _parse_signed_headers(value: str, *, in_query: bool) -> tuple[str, ...]:
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


def _parse_signature(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise MalformedSignature("Signature must be 64 hexadecimal digits")
    return value.lower()


def _parse_expires(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise MalformedSignature("X-Amz-Expires must be a whole number of seconds")
    expires = int(value)
    if not 1 <= expires <= MAX_EXPIRES:
        raise MalformedSignature(f"X-Amz-Expires must be between 1 and {MAX_EXPIRES}")
    return expires


def _check_ascii_headers(req: SigningRequest, names: tuple[str, ...]) -> None:
    """Signed header values must be ASCII: other bytes have no agreed canonical form."""
    for name in names:
        values = [req.host] if name == "host" else req.headers.getall(name, [])
        for value in values:
            if not value.isascii():
                raise MalformedSignature(f"signed header {name!r} has a non-ASCII value")


# -- keys and signatures -------------------------------------------------------------------------

_CACHE_SIZE = 256


def _derive_key(secret: bytes, prefix: str, date: str, region: str, service: str) -> bytes:
    derived = prefix.encode("utf-8") + secret
    for part in (date, region, service, "aws4_request"):
        derived = hmac.new(derived, part.encode("utf-8"), hashlib.sha256).digest()
    return derived


_cache = KeyCache(_derive_key, _CACHE_SIZE)


def signing_key(
    secret: Secret, date: str, region: str, service: str, *, prefix: str = "AWS4"
) -> bytes:
    """``kSigning`` for the scope, from a small LRU keyed by a salted hash of the secret."""
    return _cache.get(secret.reveal_bytes(), prefix, date, region, service)


def signature(key: bytes, algorithm: str, timestamp: str, scope: str, creq: str) -> str:
    """Hex HMAC of the string to sign built from the canonical request ``creq``."""
    digest = hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()
    to_sign = "\n".join([algorithm, timestamp, scope, digest])
    return prepared_hmac(key).hexdigest(to_sign.encode("utf-8"))


# -- the scheme --------------------------------------------------------------------------------


class SigV4Scheme:
    """A SigV4 signer; subclasses set ``vendor``, ``public_domains`` and ``raw_path_services``
    and implement ``native_upstream``."""

    vendor: ClassVar[str]
    public_domains: ClassVar[tuple[str, ...]]
    algorithm: ClassVar[str] = ALGORITHM
    key_prefix: ClassVar[str] = "AWS4"
    #: services whose canonical URI is the path as sent (S3 and its relatives)
    raw_path_services: ClassVar[frozenset[str]] = frozenset()
    #: a large body may be spooled: verify/resign then use ``ParsedAuth.body_sha256``
    accepts_body_sha256: ClassVar[bool] = True

    # detect / parse ------------------------------------------------------------------------

    def detect(self, req: SigningRequest) -> bool:
        """True for an ``Authorization: AWS4-HMAC-SHA256 ...`` or a presigned query."""
        auth = req.headers.get("Authorization", "").lstrip()
        if auth.startswith(self.algorithm + " "):
            return True
        return "X-Amz-Algorithm=" in req.query and any(
            k == "X-Amz-Algorithm" and v == self.algorithm for k, v in req.query_pairs()
        )

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse header or query authentication.  Raises ``MalformedSignature``."""
        if "Authorization" in req.headers:
            auth = self._parse_header_auth(req)
        elif "X-Amz-Algorithm" in dict(decode_query(req.query)):
            auth = self._parse_query_auth(req)
        else:
            raise MalformedSignature("request has neither an Authorization header nor X-Amz-*")
        state = _state(auth)
        _check_ascii_headers(req, state.signed_headers)
        if auth.body is BodyPolicy.STREAMING:
            auth.state = state = _streaming_state(req, auth, state)
        # fail here, with a precise message, rather than later in verify
        canonical_uri(req.path, raw=self.is_raw_path(auth.service or ""))
        canonical_query(req.query, drop_signature=auth.in_query)  # the entry verify uses
        auth.action = _action(req)
        return auth

    def is_raw_path(self, service: str) -> bool:
        return service in self.raw_path_services

    def _parse_header_auth(self, req: SigningRequest) -> ParsedAuth:
        values = req.headers.getall("Authorization")
        if len(values) != 1:
            raise MalformedSignature("request has more than one Authorization header")
        parts = parse_authorization(values[0], self.algorithm)
        date_header, timestamp, signed_at = _request_time(req.headers)
        access_key, region, service = _parse_scope(parts["Credential"], timestamp, "aws4_request")
        names = _parse_signed_headers(parts["SignedHeaders"], in_query=False)
        sig = _parse_signature(parts["Signature"])
        policy, sha, line = self._payload(req.headers, service, in_query=False)
        state = SigV4State(timestamp, date_header, names, line, sig)
        return ParsedAuth(
            access_key,
            signed_at,
            region,
            service,
            body=policy,
            payload_sha256=sha,
            in_query=False,
            state=state,
        )

    def _parse_query_auth(self, req: SigningRequest) -> ParsedAuth:
        params = _auth_params(req.query)
        if params.get("X-Amz-Algorithm") != self.algorithm:
            raise MalformedSignature(f"X-Amz-Algorithm must be {self.algorithm}")
        for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
            if name not in params:
                raise MalformedSignature(f"presigned request is missing {name}")
        timestamp = params["X-Amz-Date"]
        signed_at = parse_timestamp(timestamp)
        access_key, region, service = _parse_scope(
            params["X-Amz-Credential"], timestamp, "aws4_request"
        )
        names = _parse_signed_headers(params["X-Amz-SignedHeaders"], in_query=True)
        sig = _parse_signature(params["X-Amz-Signature"])
        raw_expires = params.get("X-Amz-Expires")
        expires = None if raw_expires is None else _parse_expires(raw_expires)
        policy, sha, line = self._payload(req.headers, service, in_query=True)
        state = SigV4State(timestamp, "", names, line, sig)
        return ParsedAuth(
            access_key,
            signed_at,
            region,
            service,
            body=policy,
            payload_sha256=sha,
            in_query=True,
            expires=expires,
            state=state,
        )

    def _payload(
        self, headers: CIMultiDict[str], service: str, *, in_query: bool
    ) -> tuple[BodyPolicy, str | None, str | None]:
        """(body policy, claimed sha256, payload line) from ``x-amz-content-sha256``."""
        values = headers.getall("x-amz-content-sha256", [])
        if len(values) > 1:
            raise MalformedSignature("x-amz-content-sha256 is repeated")
        if not values:
            if in_query and self.is_raw_path(service):
                # S3 presigned URLs never cover the body (botocore's S3SigV4QueryAuth)
                return BodyPolicy.UNSIGNED, None, UNSIGNED_PAYLOAD
            return BodyPolicy.BUFFER, None, None
        line = values[0].strip()
        if _HEX64.fullmatch(line):
            return BodyPolicy.CLAIMED_SHA256, line.lower(), line
        if line == UNSIGNED_PAYLOAD:
            return BodyPolicy.UNSIGNED, None, line
        if line in STREAMING_SIGNED or line == STREAMING_UNSIGNED_TRAILER:
            return BodyPolicy.STREAMING, None, line
        raise MalformedSignature("x-amz-content-sha256 must be a hex SHA-256 or a payload marker")

    # verify --------------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch``."""
        state = _state(auth)
        if not hmac.compare_digest(cred.access_key.encode(), auth.access_key.encode()):
            raise SignatureMismatch()
        self._check_token(req, auth, cred)
        headers = canonical_headers(req, state.signed_headers)
        if headers is None:
            raise SignatureMismatch()
        payload = state.payload_line or _body_hash(auth, body)
        key = self._key(cred.secret_key, auth, state.timestamp)
        scope = self._scope(auth, state.timestamp)
        matched = False
        for uri in canonical_uri(req.path, raw=self.is_raw_path(auth.service or "")):
            for query in canonical_query(req.query, drop_signature=auth.in_query):
                creq = canonical_request(
                    req.method, uri, query, headers, state.signed_headers, payload
                )
                expected = signature(key, self.algorithm, state.timestamp, scope, creq)
                # no early exit: every candidate costs the same whichever one matches
                matched |= hmac.compare_digest(expected, state.signature)
        if not matched:
            raise SignatureMismatch()
        if auth.body is BodyPolicy.STREAMING:
            # the chunks are checked later, while they stream, with this same credential
            auth.state = replace(state, proxy_cred=cred)

    def _check_token(self, req: SigningRequest, auth: ParsedAuth, cred: Credential) -> None:
        """When the proxy credential has a session token, the request must carry it."""
        if cred.access_token is None:
            return
        if auth.in_query:
            sent = dict(decode_query(req.query)).get("X-Amz-Security-Token", "")
        else:
            sent = req.headers.get("X-Amz-Security-Token", "")
        if not hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), cred.access_token.reveal_bytes()
        ):
            raise SignatureMismatch()

    def _key(self, secret: Secret, auth: ParsedAuth, timestamp: str) -> bytes:
        region, service = auth.region or "", auth.service or ""
        return signing_key(secret, timestamp[:8], region, service, prefix=self.key_prefix)

    def _scope(self, auth: ParsedAuth, timestamp: str) -> str:
        return f"{timestamp[:8]}/{auth.region}/{auth.service}/aws4_request"

    # resign --------------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place with ``cred`` at ``now``, in the form the client used.

        For an aws-chunked body the headers (seed) are signed here, with the
        ``Content-Length`` of the re-framed body; the new seed is kept in ``auth.state``, and
        when :meth:`verify` ran first ``auth.body_transformer`` is set to re-sign the chunks.
        Raises ``ValueError`` for a naive ``now``.
        """
        state = _state(auth)
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = compact_time(now)
        payload = state.payload_line or _body_hash(auth, body)
        streaming = auth.body is BodyPolicy.STREAMING
        if streaming and state.payload_line in STREAMING_SIGNED and "Content-Length" in req.headers:
            length = chunked.encoded_length(state.decoded_length or 0, state.trailers)
            req.headers["Content-Length"] = str(length)
        if auth.in_query:
            seed = self._resign_query(req, auth, state, cred, timestamp, payload)
        else:
            seed = self._resign_header(req, auth, state, cred, now, timestamp, payload)
        if streaming:
            auth.state = replace(state, resigned_seed=seed)
            if state.proxy_cred is not None:
                auth.body_transformer = self.body_transformer(
                    auth, state.proxy_cred, cred, seed, now
                )

    def body_transformer(
        self,
        auth: ParsedAuth,
        proxy_cred: Credential,
        real_cred: Credential,
        resigned_seed: str,
        now: datetime,
    ) -> BodyTransformer | None:
        """The re-signer of an aws-chunked body (``None`` for any other body): chunks are
        verified with ``proxy_cred`` from the client's seed and re-signed with ``real_cred``
        from ``resigned_seed``, made at ``now``.  Raises ``ValueError`` for a naive ``now``.
        """
        state = _state(auth)
        if auth.body is not BodyPolicy.STREAMING:
            return None
        if state.payload_line == STREAMING_UNSIGNED_TRAILER:
            return chunked.UnsignedTrailerTransformer(state.trailers, state.decoded_length)
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = compact_time(now)
        incoming = self._chain(proxy_cred, auth, state.timestamp, state.signature)
        outgoing = self._chain(real_cred, auth, timestamp, resigned_seed)
        declared = state.decoded_length or 0
        return chunked.SignedChunkTransformer(incoming, outgoing, state.trailers, declared)

    def _chain(
        self, cred: Credential, auth: ParsedAuth, timestamp: str, seed: str
    ) -> chunked.ChunkChain:
        key = self._key(cred.secret_key, auth, timestamp)
        return chunked.ChunkChain(
            key, self.algorithm, timestamp, self._scope(auth, timestamp), seed
        )

    def _resign_header(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: SigV4State,
        cred: Credential,
        now: datetime,
        timestamp: str,
        payload: str,
    ) -> str:
        if state.date_header == "date":
            # keep the client's style ("GMT" or botocore's "-0000"): both mean UTC
            gmt = req.headers.get("Date", "").rstrip().endswith("GMT")
            req.headers["Date"] = formatdate(now.timestamp(), usegmt=gmt)
        else:
            req.headers["X-Amz-Date"] = timestamp
        names = set(state.signed_headers)
        _set_token(req.headers, names, cred.access_token)
        signed = tuple(sorted(n for n in names | {"host"} if n == "host" or n in req.headers))
        _rewrite_query(req)
        headers = canonical_headers(req, signed) or ""
        sig = self._sign(req, auth, cred, timestamp, headers, signed, payload, False)
        scope = self._scope(auth, timestamp)
        req.headers["Authorization"] = (
            f"{self.algorithm} Credential={cred.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={sig}"
        )
        return sig

    def _resign_query(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: SigV4State,
        cred: Credential,
        timestamp: str,
        payload: str,
    ) -> str:
        names = set(state.signed_headers) - {"x-amz-security-token"}
        signed = tuple(sorted(n for n in names | {"host"} if n == "host" or n in req.headers))
        params = [(k, v) for k, v in decode_query(req.query) if k not in _QUERY_AUTH]
        params += [
            ("X-Amz-Algorithm", self.algorithm),
            ("X-Amz-Credential", f"{cred.access_key}/{self._scope(auth, timestamp)}"),
            ("X-Amz-Date", timestamp),
        ]
        if auth.expires is not None:
            params.append(("X-Amz-Expires", str(auth.expires)))
        params.append(("X-Amz-SignedHeaders", ";".join(signed)))
        if cred.access_token is not None:
            params.append(("X-Amz-Security-Token", cred.access_token.reveal()))
        req.query = "&".join(f"{encode_component(k)}={encode_component(v)}" for k, v in params)
        headers = canonical_headers(req, signed) or ""
        sig = self._sign(req, auth, cred, timestamp, headers, signed, payload, True)
        req.query += f"&X-Amz-Signature={sig}"
        return sig

    def _sign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        timestamp: str,
        headers: str,
        signed: tuple[str, ...],
        payload: str,
        in_query: bool,
    ) -> str:
        uri = canonical_uri(req.path, raw=self.is_raw_path(auth.service or ""))[0]
        query = canonical_query(req.query, drop_signature=in_query)[0]
        creq = canonical_request(req.method, uri, query, headers, signed, payload)
        key = self._key(cred.secret_key, auth, timestamp)
        return signature(key, self.algorithm, timestamp, self._scope(auth, timestamp), creq)


_QUERY_AUTH = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)


def _state(auth: ParsedAuth) -> SigV4State:
    if not isinstance(auth.state, SigV4State):
        raise TypeError("ParsedAuth was not produced by a SigV4 signer")
    return auth.state


def _streaming_state(req: SigningRequest, auth: ParsedAuth, state: SigV4State) -> SigV4State:
    """Check the headers an aws-chunked body depends on.  Raises ``MalformedSignature``."""
    line = state.payload_line
    trailers = chunked.trailer_names(req.headers)
    declared = chunked.decoded_length(req.headers)
    if line in STREAMING_SIGNED:
        if auth.in_query:
            raise MalformedSignature("chunk-signed uploads must use the Authorization header")
        if declared is None:
            raise MalformedSignature("chunk-signed uploads need x-amz-decoded-content-length")
        if bool(trailers) != (line == chunked.SIGNED_TRAILER):
            raise MalformedSignature("x-amz-trailer goes with, and only with, a -TRAILER payload")
    return replace(state, trailers=trailers, decoded_length=declared)


def _request_time(headers: CIMultiDict[str]) -> tuple[str, str, datetime]:
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


def _auth_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, val in decode_query(query):
        if key in _QUERY_AUTH:
            if key in params:
                raise MalformedSignature(f"presigned request repeats {key}")
            params[key] = val
    return params


def _action(req: SigningRequest) -> str | None:
    """The API action when it is cheap to know: ``Action=`` or ``X-Amz-Target``."""
    target = req.headers.get("X-Amz-Target")
    if target:
        return target.rpartition(".")[2] or None
    if "Action=" in req.query:
        for key, val in decode_query(req.query):
            if key == "Action":
                return val or None
    return None


def _set_token(headers: CIMultiDict[str], names: set[str], token: Secret | None) -> None:
    """Carry the real session token (or none) in place of the proxy credential's."""
    headers.popall("X-Amz-Security-Token", None)
    names.discard("x-amz-security-token")
    if token is not None:
        headers["X-Amz-Security-Token"] = token.reveal()
        names.add("x-amz-security-token")


def _rewrite_query(req: SigningRequest) -> None:
    """Re-encode the query the RFC 3986 way when it is not already, so that the canonical
    query we sign is the one any verifier (AWS's or botocore's) rebuilds from the wire."""
    candidates = canonical_query(req.query)
    if len(candidates) > 1:
        req.query = "&".join(
            f"{encode_component(k)}={encode_component(v)}" for k, v in decode_query(req.query)
        )


def _body_hash(auth: ParsedAuth, body: bytes | None) -> str:
    """The payload hash the proxy computes: from the spooled body, or the body given whole."""
    return auth.body_sha256 or hashlib.sha256(body or b"").hexdigest()
