"""JD Cloud's OpenAPI signature, ``JDCLOUD2-HMAC-SHA256`` (and its successor ``JDCLOUD3``).

::

    Authorization: JDCLOUD2-HMAC-SHA256 Credential=AK/20240101/cn-north-1/vm/jdcloud2_request,
                   SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, Signature=<hex>
    x-jdcloud-date: 20240101T000000Z
    x-jdcloud-nonce: <uuid>
    x-jdcloud-security-token: <session token, signed when present>

A V4-style scheme: the string to sign is ``ALGORITHM \\n x-jdcloud-date \\n scope \\n
hex(sha256(canonical request))``; the key is derived ``"JDCLOUD2" + secret -> date -> region ->
service -> "jdcloud2_request"``.  ``JDCLOUD3`` (what the current Python SDK sends) only changes
the three constants and how the path and query are canonicalised.

The SDKs do not agree on the canonical path and query, so a signature is checked against
each form a real client produces, and the request is re-signed in the form that matched:

* ``raw`` (the Go SDK, key-proxy): the path and query exactly as sent; header values trimmed
  with runs of spaces folded;
* ``python`` (``jdcloud-sdk-core``/``jdcloud-apim-sdk-core``): ``quote(path)`` of the sent
  path, and the sent query split on ``&`` and ``=``, sorted; used only when no query value
  holds a raw ``=`` (that SDK drops what follows it, which would leave it unsigned);
* ``v3`` (``JDCLOUD3``): path and query decoded, re-encoded (``~`` kept) and sorted.  Query
  parts without ``=`` are refused: that SDK leaves them out of the signature.

Re-signing uses the proxy's clock and a fresh nonce, deliberately.  key-proxy also ends up
signing "now", but by accident (its signer sees an Authorization header already there and
falls back to the current time).  Here the proxy's clock is authoritative: the client's
``x-jdcloud-date`` has already been checked against it within the skew window, so the
forwarded signature is never older than the proxy's own view of time and never outlives what
the window allowed.  The nonce is new so that the upstream's replay check sees one nonce per
signature it receives, and so that the client's nonce is not linked to the real credential.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote, unquote_to_bytes

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import BodyPolicy, ParsedAuth, SignerBase, SigningRequest
from keybroker.signers.common import (
    COMPACT_TIME_FORMAT,
    LOWER_HEX64,
    V4_FIELDS,
    check_length,
    claimed_sha256,
    host_without_default_port,
    parse_signed_headers,
    parse_utc,
    pin_host,
    require_equal,
    split_auth_fields,
    split_v4_scope,
    state_of,
    swap_token_header,
)

__all__ = ["ALGORITHMS", "SIGNER", "JingdongSigner", "canonical_request"]

DATE_HEADER = "x-jdcloud-date"
NONCE_HEADER = "x-jdcloud-nonce"
TOKEN_HEADER = "x-jdcloud-security-token"
HASH_HEADER = "x-jdcloud-content-sha256"
_MAX_AUTH_LEN = 8192
_MAX_SIGNED_HEADERS = 64

_SERVICE_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_SPACES = re.compile(r" {2,}")


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str  # the Authorization prefix
    key_prefix: str  # prepended to the secret for the first HMAC
    terminal: str  # last part of the credential scope
    variants: tuple[str, ...]  # canonical forms accepted, the first one preferred


ALGORITHMS: dict[str, _Algorithm] = {
    a.name: a
    for a in (
        _Algorithm("JDCLOUD2-HMAC-SHA256", "JDCLOUD2", "jdcloud2_request", ("raw", "python")),
        _Algorithm("JDCLOUD3-HMAC-SHA256", "JDCLOUD3", "jdcloud3_request", ("v3",)),
    )
}


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"JD Cloud signature: {message}")


# --------------------------------------------------------------------------- canonical form


def _uri(path: str, variant: str) -> str:
    if variant == "raw":
        return path or "/"
    if variant == "python":
        return quote(path or "/", safe="/")
    decoded = re.sub("/+", "/", _decode(path, plus=True))
    encoded = quote(decoded, safe="/~") if decoded else "/"
    return encoded if encoded.startswith("/") else "/" + encoded


def _decode(text: str, *, plus: bool) -> str:
    raw = unquote_to_bytes(text.replace("+", " ") if plus else text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # the SDK would fold invalid bytes into U+FFFD: two wire forms, one signature
        raise _bad("the path or query percent-decodes to invalid UTF-8") from None


def _query(query: str, variant: str) -> str:
    if variant == "raw":
        return query
    parts = [s for s in query.split("&") if s]
    if variant == "python":
        lists = sorted([p.strip() for p in s.split("=")] for s in parts)
        return "&".join(f"{p[0]}={p[1] if len(p) > 1 else ''}" for p in lists)
    pairs = sorted([quote(_decode(v, plus=True), safe="~") for v in s.split("=", 1)] for s in parts)
    # like the SDK, a part without "=" or without a name is left out (parse refuses those)
    return "&".join(f"{p[0]}={p[1]}" for p in pairs if len(p) == 2 and p[0])


def _check_query(query: str, alg: _Algorithm) -> None:
    """Refuse query parts a scheme variant would leave out of the signature."""
    if alg.variants != ("v3",):
        return
    for part in query.split("&"):
        if part and ("=" not in part or part.startswith("=")):
            raise _bad("every query parameter must have a name and '=' (others are unsigned)")
        _decode(part, plus=True)


def _python_form_usable(query: str) -> bool:
    # that SDK keeps only what lies between the first and second '=': the rest is unsigned
    return all(part.count("=") <= 1 for part in query.split("&"))


def _header_value(req: SigningRequest, name: str, variant: str) -> str:
    if name == "host":
        return host_without_default_port(req.host).strip()
    value = ",".join(v.strip() for v in req.headers.getall(name, []))
    return _SPACES.sub(" ", value) if variant == "raw" else value


def canonical_request(
    req: SigningRequest, signed_headers: tuple[str, ...], payload_hash: str, variant: str
) -> str:
    """The canonical request of ``req`` in ``variant`` (``raw``, ``python`` or ``v3``)."""
    headers = "".join(f"{n}:{_header_value(req, n, variant)}\n" for n in signed_headers)
    return "\n".join(
        [
            req.method.upper(),
            _uri(req.path, variant),
            _query(req.query, variant),
            headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _signature(alg: _Algorithm, secret: bytes, scope: _Scope, date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    to_sign = f"{alg.name}\n{date}\n{scope.text(alg)}\n{digest}"
    key = alg.key_prefix.encode() + secret
    for part in (scope.date, scope.region, scope.service, alg.terminal):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Scope:
    access_key: str
    date: str
    region: str
    service: str

    def text(self, alg: _Algorithm) -> str:
        return f"{self.date}/{self.region}/{self.service}/{alg.terminal}"


@dataclass(frozen=True, slots=True)
class _State:
    """What ``parse`` found.  ``matched`` is filled by ``verify`` with the canonical form
    the client used, so ``resign`` can speak the same dialect.  Never printed whole."""

    alg: _Algorithm
    scope: _Scope
    date: str
    signed_headers: tuple[str, ...]
    signature: str
    matched: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"_State(alg={self.alg.name!r}, signed_headers={self.signed_headers!r})"


def _split_authorization(value: str) -> tuple[_Algorithm, dict[str, str]]:
    check_length(value, _MAX_AUTH_LEN, _bad)
    name, _, rest = value.partition(" ")
    alg = ALGORITHMS.get(name)
    if alg is None:
        raise _bad(
            "Authorization must start with 'JDCLOUD2-HMAC-SHA256 ' or 'JDCLOUD3-HMAC-SHA256 '"
        )
    return alg, split_auth_fields(rest, V4_FIELDS, _bad)


def _parse_scope(credential: str, alg: _Algorithm) -> _Scope:
    return _Scope(*split_v4_scope(credential, alg.terminal, _bad))


def _parse_signed_headers(value: str, alg: _Algorithm) -> tuple[str, ...]:
    names = parse_signed_headers(value, _bad, limit=_MAX_SIGNED_HEADERS)
    if alg.name.startswith("JDCLOUD2"):
        # documented: the date and the nonce are always signed (the JDCLOUD3 SDK adds them
        # after signing, so there the date counts only through the string to sign)
        for required in (DATE_HEADER, NONCE_HEADER):
            if required not in names:
                raise _bad(f"SignedHeaders must include {required}")
    return names


def _single(req: SigningRequest, name: str, *, required: bool) -> str | None:
    values = req.headers.getall(name, [])
    if len(values) > 1:
        raise _bad(f"header {name!r} appears more than once")
    if not values and required:
        raise _bad(f"header {name!r} is missing from the request")
    return values[0].strip() if values else None


def _parse_date(value: str, scope: _Scope) -> datetime:
    when = parse_utc(value, DATE_HEADER, _bad)
    if value[:8] != scope.date:
        raise _bad(f"{DATE_HEADER} and the Credential date differ")
    return when


def _body_policy(req: SigningRequest) -> tuple[BodyPolicy, str | None]:
    # The SDKs send the body hash unsigned; the proxy holds the body to it while streaming,
    # and the signature covers it, so a lie in the header fails one check or the other.
    return claimed_sha256(req, HASH_HEADER)


# --------------------------------------------------------------------------- the signer


class JingdongSigner(SignerBase):
    """JD Cloud ``JDCLOUD2-HMAC-SHA256`` / ``JDCLOUD3-HMAC-SHA256`` (header form).

    ``nonce`` makes the nonce of re-signed requests (a fresh UUID4 by default; injectable so
    tests can compare with the SDK at the same instant and nonce).
    """

    vendor: ClassVar[str] = "jingdong"
    accepts_body_sha256: ClassVar[bool] = True  # large bodies may be spooled
    public_domains: ClassVar[tuple[str, ...]] = (".jdcloud-api.com",)
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, nonce: Callable[[], str] | None = None) -> None:
        self._nonce = nonce or (lambda: str(uuid.uuid4()))

    def __repr__(self) -> str:
        return "JingdongSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for an Authorization header starting ``JDCLOUD2-HMAC-SHA256 `` (or ``3``)."""
        value = req.headers.get("Authorization", "")
        return any(value.startswith(name + " ") for name in ALGORITHMS)

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the Authorization header.  Raises ``MalformedSignature`` naming the field."""
        values = req.headers.getall("Authorization", [])
        if len(values) != 1:
            raise _bad("exactly one Authorization header is required")
        alg, fields = _split_authorization(values[0])
        scope = _parse_scope(fields["Credential"], alg)
        names = _parse_signed_headers(fields["SignedHeaders"], alg)
        if not LOWER_HEX64.fullmatch(fields["Signature"]):
            raise _bad("Signature must be 64 lower-case hex digits")
        date = _single(req, DATE_HEADER, required=True)
        assert date is not None  # required=True either returns a value or raises
        signed_at = _parse_date(date, scope)
        for name in names:
            if name != "host":
                _single(req, name, required=True)
        _check_query(req.query, alg)
        body, claimed = _body_policy(req)
        return ParsedAuth(
            access_key=scope.access_key,
            signed_at=signed_at,
            region=scope.region,
            service=scope.service,
            body=body,
            payload_sha256=claimed,
            state=_State(alg, scope, date, names, fields["Signature"]),
            signature=bytes.fromhex(fields["Signature"]),
        )

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "JingdongSigner")

    @staticmethod
    def _payload_hash(auth: ParsedAuth, body: bytes | None) -> str:
        if auth.body is BodyPolicy.CLAIMED_SHA256 and auth.payload_sha256:
            return auth.payload_sha256
        return auth.body_digest(body)

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Check the signature with ``cred`` in each canonical form the SDKs produce.

        Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        require_equal(cred.access_key, state.scope.access_key)
        payload = self._payload_hash(auth, body)
        secret = cred.secret_key.reveal_bytes()
        for variant in state.alg.variants:
            if variant == "python" and not _python_form_usable(req.query):
                continue
            canonical = canonical_request(req, state.signed_headers, payload, variant)
            expected = _signature(state.alg, secret, state.scope, state.date, canonical)
            if hmac.compare_digest(expected.encode(), state.signature.encode()):
                state.matched[:] = [variant]
                return
        raise SignatureMismatch()

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now`` with a fresh nonce, in the
        algorithm and canonical form the client used.  Raises ``MalformedSignature`` when a
        signed header is no longer in ``req``."""
        state = self._state(auth)
        date = now.astimezone(UTC).strftime(COMPACT_TIME_FORMAT)
        scope = replace(state.scope, access_key=cred.access_key, date=date[:8])
        names = set(state.signed_headers)
        # documented: the token is signed whenever present
        swap_token_header(req, TOKEN_HEADER, cred.access_token, names)
        req.headers[DATE_HEADER] = date
        req.headers[NONCE_HEADER] = self._nonce()
        pin_host(req)
        payload = self._payload_hash(auth, body)
        if HASH_HEADER in req.headers:
            req.headers[HASH_HEADER] = payload
        headers = tuple(sorted(names))
        for name in headers:
            if name != "host":
                _single(req, name, required=True)
        variant = state.matched[0] if state.matched else state.alg.variants[0]
        canonical = canonical_request(req, headers, payload, variant)
        signature = _signature(state.alg, cred.secret_key.reveal_bytes(), scope, date, canonical)
        req.headers["Authorization"] = (
            f"{state.alg.name} Credential={scope.access_key}/{scope.text(state.alg)}, "
            f"SignedHeaders={';'.join(headers)}, Signature={signature}"
        )

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://<service>.jdcloud-api.com``: every service client of the SDK defaults to
        its own host named after the service in the signature scope."""
        service = (auth.service or "").lower()
        if not _SERVICE_LABEL.fullmatch(service):
            return None
        return f"https://{service}.jdcloud-api.com"


SIGNER = JingdongSigner()
