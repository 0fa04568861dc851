"""Huawei Cloud's ``SDK-HMAC-SHA256`` request signature (API Gateway "AK/SK signing").

::

    Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-sdk-date,
                   Signature=<hex>
    X-Sdk-Date: 20191115T033655Z

The string to sign is ``SDK-HMAC-SHA256 \\n X-Sdk-Date \\n hex(sha256(canonical request))`` and
the signature is ``hex(HMAC-SHA256(secret key, string to sign))`` — no derived key, no scope.
The canonical request is built the way ``huaweicloudsdkcore.signer.Signer`` builds it:

* path: percent-decoded *as a whole* (so ``%2F`` becomes a separator, as in the SDKs), split
  on ``/``, each segment re-encoded with only ``A-Z a-z 0-9 - _ . ~`` kept, and always ending
  with ``/`` (the documented rule: the canonical URI ends with a slash even when the request's
  path does not);
* query: pairs percent-decoded (``+`` is a space), sorted by name then value, re-encoded;
* headers: the names listed in ``SignedHeaders``, ``name:trimmed value`` each on its line;
  ``host`` is the Host really used (port included when the URL had one);
* payload: ``sha256(body)``; the SDK puts ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` on every
  request whose content type is not JSON/BSON, and then signs that literal instead of the hash.
  An empty body is always signed as the hash of nothing, whatever that header says.

Temporary credentials add ``X-Security-Token``, signed like every other header.  Not
supported: the derived-key ``V11-HMAC-SHA256``, ``SDK-HMAC-SM3``, ``SDK-ECDSA-P256-SHA256`` and
``SDK-SM2-SM3`` algorithms the SDK offers as options (their requests are not detected).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import unquote_to_bytes

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import (
    BodyPolicy,
    ErrorAnswer,
    ParsedAuth,
    SignerBase,
    SigningRequest,
    json_error,
)
from keybroker.signers.common import (
    COMPACT_TIME_FORMAT,
    HEX64,
    LOWER_HEX64,
    PRINTABLE_ID,
    host_name,
    parse_signed_headers,
    parse_utc,
    pin_host,
    require_equal,
    require_signed_headers,
    single_header,
    split_authorization,
    state_of,
    swap_token_header,
)
from keybroker.signers.encoding import decode_query, encode_unreserved

__all__ = ["ALGORITHM", "SIGNER", "HuaweiSigner", "canonical_query", "canonical_uri"]

ALGORITHM = "SDK-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_AUTH_LEN = 8192
_MAX_SIGNED_HEADERS = 64
_FIELDS = ("Access", "SignedHeaders", "Signature")

# Unlike the other schemes' names, no "_": the SDK's header names never have one.
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^`|~\-]{1,128}")
_LENGTH = re.compile(r"[0-9]{1,19}")
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")

#: API hosts are ``<service>.<region>.myhuaweicloud.com`` (``.eu`` for the European site) or,
#: for global services, ``<service>.myhuaweicloud.com``; the wider ``huaweicloud.com`` (web
#: sites, documentation) is deliberately not an upstream the real credential may go to.
_API_SUFFIXES = (".myhuaweicloud.com", ".myhuaweicloud.eu")


# --------------------------------------------------------------------------- canonical form


def canonical_uri(raw_path: str) -> str:
    """The canonical path: decoded whole, split on ``/``, re-encoded, ending with ``/``."""
    # encode_unreserved keeps exactly what the SDK's quote(s, "~") keeps.
    segments = unquote_to_bytes(raw_path or "/").split(b"/")
    uri = "/".join(encode_unreserved(seg) for seg in segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """Pairs sorted by decoded name, then decoded value (UTF-8 byte order is code point order,
    which is how the SDK sorts its ``(name, value)`` tuples), then encoded."""
    pairs = sorted(decode_query(raw_query))
    return "&".join(f"{encode_unreserved(n)}={encode_unreserved(v)}" for n, v in pairs)


def _canonical_headers(req: SigningRequest, names: tuple[str, ...]) -> str:
    lines = []
    for name in names:
        value = req.host if name == "host" else req.headers.get(name, "")
        lines.append(f"{name}:{value.strip()}\n")
    return "".join(lines)


def _sign(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _State:
    """What ``parse`` found, carried to ``verify``/``resign``.  Never printed whole.

    ``claimed`` is the ``X-Sdk-Content-Sha256`` value (``None`` when absent: the body is
    hashed); ``empty`` says whether the body is empty when that is known without reading it.
    """

    access_key: str
    sdk_date: str
    signed_headers: tuple[str, ...]
    signature: str
    claimed: str | None
    empty: bool | None

    def __repr__(self) -> str:
        return f"_State(sdk_date={self.sdk_date!r}, signed_headers={self.signed_headers!r})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Huawei signature: {message}")


def _parse_sdk_date(req: SigningRequest) -> tuple[str, datetime]:
    value = single_header(req, "X-Sdk-Date", _bad)
    if value is None:
        raise _bad("X-Sdk-Date is missing")
    return value, parse_utc(value, "X-Sdk-Date", _bad)


def _parse_claimed(req: SigningRequest) -> str | None:
    value = single_header(req, "X-Sdk-Content-Sha256", _bad)
    if value is None:
        return None
    value = value.strip()
    if value != UNSIGNED_PAYLOAD and not HEX64.fullmatch(value):
        raise _bad(f"X-Sdk-Content-Sha256 must be {UNSIGNED_PAYLOAD} or 64 hex digits")
    return value


def _known_empty(req: SigningRequest) -> bool | None:
    """Whether the body is empty, from Content-Length; ``None`` when it cannot be told."""
    value = single_header(req, "Content-Length", _bad)
    if value is None or not _LENGTH.fullmatch(value.strip()):
        return None
    return int(value) == 0


def _body_policy(claimed: str | None, empty: bool | None) -> tuple[BodyPolicy, str | None]:
    if claimed is None or empty is None:
        # The body is hashed into the signature, or we must see it to know whether it is empty
        # (an empty body is signed as the empty hash whatever the header claims).
        return BodyPolicy.BUFFER, None
    if claimed == UNSIGNED_PAYLOAD or empty:
        return BodyPolicy.UNSIGNED, None
    return BodyPolicy.CLAIMED_SHA256, claimed.lower()


def _host_parts(host: str) -> tuple[str | None, str | None]:
    """``(service, region)`` from a public API host name, when it is one."""
    name = host_name(host)
    for suffix in _API_SUFFIXES:
        if name.endswith(suffix):
            labels = name[: -len(suffix)].split(".")
            region = labels[1] if len(labels) > 1 and _REGION.fullmatch(labels[1]) else None
            return labels[0] or None, region
    return None, None


# --------------------------------------------------------------------------- the signer


class HuaweiSigner(SignerBase):
    """Huawei Cloud ``SDK-HMAC-SHA256`` (header form)."""

    vendor: ClassVar[str] = "huawei"
    public_domains: ClassVar[tuple[str, ...]] = _API_SUFFIXES
    #: OBS static website endpoints (customers' content)
    excluded_hosts: ClassVar[tuple[str, ...]] = (
        "*.obs-website.*.myhuaweicloud.com",
        "*.obs-website.*.myhuaweicloud.eu",
    )

    def __repr__(self) -> str:
        return "HuaweiSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for an ``SDK-HMAC-SHA256 `` Authorization header."""
        return req.headers.get("Authorization", "").startswith(ALGORITHM + " ")

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the signature.  Raises ``MalformedSignature`` naming the faulty field."""
        value = single_header(req, "Authorization", _bad)
        if value is None:
            raise _bad("no Authorization header")
        fields = split_authorization(value, ALGORITHM, _FIELDS, _bad, limit=_MAX_AUTH_LEN)
        access_key = fields["Access"]
        if not PRINTABLE_ID.fullmatch(access_key):
            raise _bad("Access is empty or has invalid characters")
        headers = parse_signed_headers(
            fields["SignedHeaders"], _bad, limit=_MAX_SIGNED_HEADERS, pattern=_HEADER_NAME
        )
        if not LOWER_HEX64.fullmatch(fields["Signature"]):
            raise _bad("Signature must be 64 lower-case hex digits")
        sdk_date, signed_at = _parse_sdk_date(req)
        require_signed_headers(req, headers, _bad)
        claimed, empty = _parse_claimed(req), _known_empty(req)
        body, payload = _body_policy(claimed, empty)
        service, region = _host_parts(req.host)
        state = _State(access_key, sdk_date, headers, fields["Signature"], claimed, empty)
        return ParsedAuth(
            access_key=access_key,
            signed_at=signed_at,
            region=region,
            service=service,
            body=body,
            payload_sha256=payload,
            state=state,
            signature=bytes.fromhex(fields["Signature"]),
        )

    # verify ---------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        require_equal(cred.access_key, state.access_key)
        self._check_claimed_hash(state, auth, body)
        require_equal(self.signature(req, auth, cred, body), state.signature)

    @staticmethod
    def _check_claimed_hash(state: _State, auth: ParsedAuth, body: bytes | None) -> None:
        # A claimed hash over a buffered body is checked here; a streamed one by the proxy.
        if body and state.claimed is not None and state.claimed != UNSIGNED_PAYLOAD:
            actual = auth.body_digest(body)
            if not hmac.compare_digest(actual, state.claimed.lower()):
                raise SignatureMismatch()

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "HuaweiSigner")

    @staticmethod
    def _payload_line(state: _State, auth: ParsedAuth, body: bytes | None) -> str:
        if body is None:  # streamed: parse only lets that happen with a known-empty flag
            if state.claimed is None or state.empty:
                return EMPTY_SHA256
            return state.claimed
        if not body:
            return EMPTY_SHA256
        return state.claimed if state.claimed is not None else auth.body_digest(body)

    def canonical_request(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> str:
        """The canonical request ``verify`` would sign (for diagnostics and test vectors)."""
        state = self._state(auth)
        names = state.signed_headers
        return "\n".join(
            [
                req.method.upper(),
                canonical_uri(req.path),
                canonical_query(req.query),
                _canonical_headers(req, names),
                ";".join(names),
                self._payload_line(state, auth, body),
            ]
        )

    def signature(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> str:
        """The hex signature ``cred`` makes over ``req`` as ``auth`` describes it."""
        state = self._state(auth)
        digest = hashlib.sha256(
            self.canonical_request(req, auth, body).encode("utf-8", "surrogatepass")
        ).hexdigest()
        to_sign = f"{ALGORITHM}\n{state.sdk_date}\n{digest}"
        return _sign(cred.secret_key.reveal_bytes(), to_sign)

    # resign ---------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now``, over the same headers (the session
        token swapped for the real one's).  Raises ``MalformedSignature`` when a signed header
        is no longer in ``req``."""
        state = self._state(auth)
        sdk_date = now.astimezone(UTC).strftime(COMPACT_TIME_FORMAT)
        names = set(state.signed_headers)
        swap_token_header(req, "X-Security-Token", cred.access_token, names)
        req.headers["X-Sdk-Date"] = sdk_date
        pin_host(req)
        headers = tuple(sorted(names))
        require_signed_headers(req, headers, _bad)
        new_state = replace(
            state, access_key=cred.access_key, sdk_date=sdk_date, signed_headers=headers
        )
        signature = self.signature(req, replace(auth, state=new_state), cred, body)
        req.headers["Authorization"] = (
            f"{ALGORITHM} Access={cred.access_key}, "
            f"SignedHeaders={';'.join(headers)}, Signature={signature}"
        )

    # upstream -------------------------------------------------------------------------

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal as Huawei Cloud's SDKs read an error answer."""
        return json_error({"error_code": code, "error_msg": message, "request_id": request_id})

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://host`` when the signed Host is itself a public API host (the client
        resolved the vendor's name to keybroker); ``None`` otherwise — the signature names
        no service or region, so an ``Upstream`` must be configured."""
        name = host_name(req.host)
        if any(name.endswith(suffix) for suffix in _API_SUFFIXES):
            return f"https://{name}"
        return None


SIGNER = HuaweiSigner()
