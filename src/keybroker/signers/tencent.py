"""Tencent Cloud API 3.0 (vendor code ``tencent``): ``TC3-HMAC-SHA256`` and the legacy v1
parameter signature.

**TC3-HMAC-SHA256** (signature v3) — ``Authorization: TC3-HMAC-SHA256
Credential=SecretId/YYYY-MM-DD/service/tc3_request, SignedHeaders=content-type;host,
Signature=hex`` with the time in ``X-TC-Timestamp`` (Unix seconds; the scope date is its UTC
date).  The canonical request is::

    METHOD \\n path \\n query (GET only; "" otherwise) \\n
    name:value lines of the signed headers \\n signed names \\n sha256(body)

Header values are trimmed; Tencent's documentation lower-cases them while its Python SDK signs
them as sent, so verification accepts either and re-signing uses the documented (lower-case)
form.  ``X-TC-Content-SHA256: UNSIGNED-PAYLOAD`` replaces the body by that literal, as the SDK
does.  A temporary credential's token travels, unsigned, in ``X-TC-Token``.  Since a query is
never signed outside GET, any other method with a query is refused.

**Signature v1** (``HmacSHA1``/``HmacSHA256``) — the parameters ``SecretId``, ``Nonce``,
``Timestamp``, ``SignatureMethod``, ``Signature`` (and ``Token``) travel with the others in the
query (GET) or the form body (POST); the signature is the Base64 HMAC of
``METHOD + host + path + "?" + k=v&...`` over every other parameter, raw values, sorted by name
(``_`` in a name read as ``.``).  The proxy must read form bodies first (``body_credentials``).
v1 names no service, so it has no native endpoint: set ``Upstream`` for native-mode v1 use.

Parse errors raise :class:`~keybroker.errors.MalformedSignature` naming the field, never its
value; a wrong signature raises the opaque :class:`~keybroker.errors.SignatureMismatch`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote_plus, unquote_to_bytes

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers._action_params import rpc_operation
from keybroker.signers.base import (
    BodyPolicy,
    ErrorAnswer,
    Operation,
    ParsedAuth,
    SignerBase,
    SigningRequest,
    json_error,
)
from keybroker.signers.common import (
    LOWER_HEX64,
    PRINTABLE_ID,
    V4_FIELDS,
    media_type,
    parse_signed_headers,
    pin_host,
    require_equal,
    split_authorization,
)

__all__ = ["ALGORITHM", "ROOT_DOMAIN", "SIGNER", "TencentSigner", "tc3_signing_key"]

ALGORITHM = "TC3-HMAC-SHA256"
ROOT_DOMAIN = "tencentcloudapi.com"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_UNSIGNED_PAYLOAD_SHA256 = hashlib.sha256(UNSIGNED_PAYLOAD.encode()).hexdigest()
FORM = "application/x-www-form-urlencoded"
_LEGACY_DIGESTS = {"HmacSHA1": hashlib.sha1, "HmacSHA256": hashlib.sha256}
_LEGACY_REQUIRED = ("SecretId", "Nonce", "Timestamp", "Signature")
_MAX_AUTH_LEN = 4096
_MAX_PARAMS = 1000
_MAX_SIGNED_HEADERS = 32

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SECONDS = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9]{1,20}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOST_LABELS = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True, slots=True)
class _TC3State:
    timestamp: str
    service: str
    signed_headers: tuple[str, ...]
    unsigned_payload: bool
    signature: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class _LegacyState:
    # decoded, in wire order, Signature and Token included: never in a repr
    params: tuple[tuple[str, str], ...] = field(repr=False)
    in_body: bool
    method: str  # SignatureMethod
    signature: str = field(default="", repr=False)


def _single_header(req: SigningRequest, name: str) -> str | None:
    """The one value of ``name`` (the vendor reads the operation there; two values are two
    readings).  Raises ``MalformedSignature``."""
    values = req.headers.getall(name, [])
    if len(values) > 1:
        raise _bad(f"{name} appears more than once")
    return values[0].strip() or None if values else None


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(message)


# -- TC3-HMAC-SHA256 ---------------------------------------------------------------------


def tc3_signing_key(secret: bytes, date: str, service: str) -> bytes:
    """``HMAC(HMAC(HMAC("TC3" + secret, date), service), "tc3_request")``."""
    key = hmac.new(b"TC3" + secret, date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    return hmac.new(key, b"tc3_request", hashlib.sha256).digest()


def _parse_credential(value: str) -> tuple[str, str, str]:
    """``SecretId/YYYY-MM-DD/service/tc3_request`` -> (secret id, date, service)."""
    parts = value.rsplit("/", 3)
    if len(parts) != 4:
        raise _bad("Credential must be SecretId/YYYY-MM-DD/service/tc3_request")
    secret_id, date, service, terminator = parts
    if not PRINTABLE_ID.fullmatch(secret_id):
        raise _bad("Credential SecretId is empty or not printable ASCII")
    if not _DATE.fullmatch(date):
        raise _bad("Credential date must be YYYY-MM-DD")
    if not _SERVICE.fullmatch(service):
        raise _bad("Credential service is not valid")
    if terminator != "tc3_request":
        raise _bad("Credential must end with tc3_request")
    return secret_id, date, service


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    names = parse_signed_headers(value, _bad, limit=_MAX_SIGNED_HEADERS)
    if "content-type" not in names or "host" not in names:
        raise _bad("SignedHeaders must include content-type and host")
    if "authorization" in names:
        raise _bad("SignedHeaders must not include authorization")
    return names


def _parse_timestamp(req: SigningRequest, date: str) -> datetime:
    values = req.headers.getall("X-TC-Timestamp", [])
    if len(values) != 1:
        raise _bad("X-TC-Timestamp must appear exactly once")
    raw = values[0].strip()
    if not _SECONDS.fullmatch(raw):
        raise _bad("X-TC-Timestamp must be Unix seconds")
    when = datetime.fromtimestamp(int(raw), UTC)
    if when.strftime("%Y-%m-%d") != date:
        raise _bad("Credential date is not the UTC date of X-TC-Timestamp")
    return when


def _check_headers_present(req: SigningRequest, names: tuple[str, ...]) -> None:
    for name in names:
        if name == "host":
            continue
        count = len(req.headers.getall(name, []))
        if count != 1:
            what = "is missing from" if count == 0 else "appears more than once in"
            raise _bad(f"signed header {name!r} {what} the request")
        if not req.headers[name].isascii():
            raise _bad(f"signed header {name!r} has a non-ASCII value")


def _unsigned_payload(req: SigningRequest) -> bool:
    values = req.headers.getall("X-TC-Content-SHA256", [])
    if not values:
        return False
    if len(values) > 1 or values[0].strip() != UNSIGNED_PAYLOAD:
        raise _bad(f"X-TC-Content-SHA256 may only be {UNSIGNED_PAYLOAD}")
    return True


def _canonical_headers(req: SigningRequest, names: tuple[str, ...], *, lower: bool) -> str:
    lines = []
    for name in names:
        value = (req.host if name == "host" else req.headers.get(name, "")).strip()
        lines.append(f"{name}:{value.lower() if lower else value}\n")
    return "".join(lines)


def _tc3_payload_hash(state: _TC3State, auth: ParsedAuth, body: bytes | None) -> str:
    """The canonical request's last line: the hash of the body, or of the literal
    ``UNSIGNED-PAYLOAD`` that replaces it."""
    return _UNSIGNED_PAYLOAD_SHA256 if state.unsigned_payload else auth.body_digest(body)


def _tc3_signature(
    req: SigningRequest, state: _TC3State, secret: bytes, payload_sha256: str, *, lower: bool
) -> str:
    query = req.query if req.method.upper() == "GET" else ""
    canonical = "\n".join(
        [
            req.method.upper(),
            req.path or "/",
            query,
            _canonical_headers(req, state.signed_headers, lower=lower),
            ";".join(state.signed_headers),
            payload_sha256,
        ]
    )
    date = datetime.fromtimestamp(int(state.timestamp), UTC).strftime("%Y-%m-%d")
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    to_sign = f"{ALGORITHM}\n{state.timestamp}\n{date}/{state.service}/tc3_request\n{digest}"
    key = tc3_signing_key(secret, date, state.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# -- signature v1 --------------------------------------------------------------------------


def _form_pairs(text: str, where: str) -> list[tuple[str, str]]:
    """Decode ``a=b&c=d`` the form way (``+`` is a space).  Raises ``MalformedSignature``."""
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_form_decode(name, where), _form_decode(value, where)))
        if len(pairs) > _MAX_PARAMS:
            raise _bad(f"the {where} has more than {_MAX_PARAMS} parameters")
    return pairs


def _form_decode(text: str, where: str) -> str:
    try:
        raw = unquote_to_bytes(text.replace("+", " ").encode("utf-8", "surrogateescape"))
        return raw.decode("utf-8")
    except UnicodeError:
        raise _bad(f"the {where} is not valid UTF-8") from None


def _is_form(req: SigningRequest) -> bool:
    return media_type(req) == FORM


def _legacy_source(req: SigningRequest) -> tuple[list[tuple[str, str]], bool] | None:
    """(pairs, in body) of the v1 parameters, or ``None`` when the request has none."""
    query = _form_pairs(req.query, "query string") if req.query else []
    if any(name == "Signature" for name, _ in query):
        return query, False
    if req.body and _is_form(req):
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("the form body is not valid UTF-8") from None
        body = _form_pairs(text, "form body")
        if any(name == "Signature" for name, _ in body):
            return body, True
    return None


def _legacy_string(method: str, host: str, path: str, params: tuple[tuple[str, str], ...]) -> str:
    named = sorted((k.replace("_", "."), v) for k, v in params if k != "Signature")
    return f"{method.upper()}{host}{path or '/'}?" + "&".join(f"{k}={v}" for k, v in named)


def _legacy_signature(
    req: SigningRequest, state: _LegacyState, params: tuple[tuple[str, str], ...], secret: bytes
) -> str:
    text = _legacy_string(req.method, req.host, req.path, params)
    digest = hmac.new(secret, text.encode("utf-8"), _LEGACY_DIGESTS[state.method]).digest()
    return base64.b64encode(digest).decode()


def _check_legacy_signature(value: str, method: str) -> None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("Signature must be Base64") from None
    if len(raw) != _LEGACY_DIGESTS[method]().digest_size:
        raise _bad(f"Signature has the wrong length for {method}")


# -- the signer ----------------------------------------------------------------------------


class TencentSigner(SignerBase):
    """Tencent Cloud ``TC3-HMAC-SHA256`` and v1 ``HmacSHA1``/``HmacSHA256``; stateless."""

    vendor: ClassVar[str] = "tencent"
    public_domains: ClassVar[tuple[str, ...]] = ("." + ROOT_DOMAIN,)
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()
    #: v1 POST requests carry SecretId and Signature inside a form body
    body_credentials: ClassVar[bool] = True
    #: the parameter naming the credential (read from a long body's first bytes)
    body_credential_param: ClassVar[str] = "SecretId"

    def __repr__(self) -> str:
        return "TencentSigner()"

    # detect / parse ------------------------------------------------------------------

    def detect(self, req: SigningRequest) -> bool:
        """True for a ``TC3-HMAC-SHA256`` Authorization, or (no Authorization at all) v1
        parameters ``SecretId``, ``Nonce``, ``Timestamp`` and ``Signature`` together."""
        auth = req.headers.get("Authorization")
        if auth is not None:
            return auth.startswith(ALGORITHM + " ")
        try:
            found = _legacy_source(req)
        except MalformedSignature:
            return False
        if found is None:
            return False
        names = {name for name, _ in found[0]}
        return all(name in names for name in _LEGACY_REQUIRED)

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse a TC3 header or v1 parameters.  Raises ``MalformedSignature``."""
        if "Authorization" in req.headers:
            return self._parse_tc3(req)
        found = _legacy_source(req)
        if found is None:
            raise _bad("no TC3-HMAC-SHA256 Authorization and no Signature parameter")
        return self._parse_legacy(req, *found)

    def _parse_tc3(self, req: SigningRequest) -> ParsedAuth:
        values = req.headers.getall("Authorization")
        if len(values) != 1:
            raise _bad("Authorization appears more than once")
        fields = split_authorization(
            values[0].strip(), ALGORITHM, V4_FIELDS, _bad, limit=_MAX_AUTH_LEN, strip_values=True
        )
        secret_id, date, service = _parse_credential(fields["Credential"])
        names = _parse_signed_headers(fields["SignedHeaders"])
        if not LOWER_HEX64.fullmatch(fields["Signature"]):
            raise _bad("Signature must be 64 lower-case hex digits")
        signed_at = _parse_timestamp(req, date)
        _check_headers_present(req, names)
        if req.query and req.method.upper() != "GET":
            raise _bad("TC3 signs no query outside GET; this request must not carry one")
        unsigned = _unsigned_payload(req)
        timestamp = req.headers["X-TC-Timestamp"].strip()
        state = _TC3State(timestamp, service, names, unsigned, fields["Signature"])
        return ParsedAuth(
            access_key=secret_id,
            signed_at=signed_at,
            region=req.headers.get("X-TC-Region") or None,
            service=service,
            body=BodyPolicy.UNSIGNED if unsigned else BodyPolicy.BUFFER,
            action=_single_header(req, "X-TC-Action"),
            state=state,
            signature=bytes.fromhex(fields["Signature"]),
        )

    def _parse_legacy(
        self, req: SigningRequest, pairs: list[tuple[str, str]], in_body: bool
    ) -> ParsedAuth:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise _bad("a v1-signed request must not repeat a parameter")
        params = dict(pairs)
        for name in _LEGACY_REQUIRED:
            if not params.get(name):
                raise _bad(f"parameter {name} is missing")
        if in_body and req.query:
            raise _bad("a v1-signed form body must not come with a query string")
        if not in_body and req.body:
            raise _bad("a v1 request signed in its query must not have a body")
        method = params.get("SignatureMethod", "HmacSHA1")
        if method not in _LEGACY_DIGESTS:
            raise _bad("SignatureMethod must be HmacSHA1 or HmacSHA256")
        if not PRINTABLE_ID.fullmatch(params["SecretId"]):
            raise _bad("SecretId is not printable ASCII")
        if not _SECONDS.fullmatch(params["Timestamp"]):
            raise _bad("Timestamp must be Unix seconds")
        if not _NONCE.fullmatch(params["Nonce"]):
            raise _bad("Nonce must be a positive integer")
        _check_legacy_signature(params["Signature"], method)
        state = _LegacyState(tuple(pairs), in_body, method, params["Signature"])
        return ParsedAuth(
            access_key=params["SecretId"],
            signed_at=datetime.fromtimestamp(int(params["Timestamp"]), UTC),
            region=params.get("Region") or None,
            body=BodyPolicy.BUFFER,
            in_query=not in_body,
            action=params.get("Action") or None,
            state=state,
            signature=base64.b64decode(params["Signature"]),
        )

    # verify ---------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        require_equal(cred.access_key, auth.access_key)
        state = auth.state
        if isinstance(state, _TC3State):
            self._check_token(req.headers.get("X-TC-Token", ""), cred)
            self._verify_tc3(req, state, cred, _tc3_payload_hash(state, auth, body))
        elif isinstance(state, _LegacyState):
            self._check_token(dict(state.params).get("Token", ""), cred)
            expected = _legacy_signature(req, state, state.params, cred.secret_key.reveal_bytes())
            require_equal(expected, state.signature)
        else:
            raise TypeError("ParsedAuth was not produced by TencentSigner.parse")

    @staticmethod
    def _check_token(sent: str, cred: Credential) -> None:
        """A proxy credential with a token requires that token (it is not signed)."""
        if cred.access_token is not None:
            require_equal(sent, cred.access_token.reveal_bytes())

    @staticmethod
    def _verify_tc3(
        req: SigningRequest, state: _TC3State, cred: Credential, payload_sha256: str
    ) -> None:
        secret = cred.secret_key.reveal_bytes()
        matched = False
        for lower in (True, False):  # documented form, then the SDK's as-sent form
            expected = _tc3_signature(req, state, secret, payload_sha256, lower=lower)
            matched |= hmac.compare_digest(expected, state.signature)
        if not matched:
            raise SignatureMismatch()

    # resign ---------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now``, in the scheme the client used.

        Raises ``MalformedSignature`` when a signed header is no longer in ``req`` and
        ``ValueError`` for a naive ``now``.
        """
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = str(int(now.timestamp()))
        state = auth.state
        if isinstance(state, _TC3State):
            self._resign_tc3(req, state, cred, _tc3_payload_hash(state, auth, body), timestamp)
        elif isinstance(state, _LegacyState):
            self._resign_legacy(req, state, cred, timestamp)
        else:
            raise TypeError("ParsedAuth was not produced by TencentSigner.parse")

    @staticmethod
    def _resign_tc3(
        req: SigningRequest, state: _TC3State, cred: Credential, payload_sha256: str, ts: str
    ) -> None:
        _check_headers_present(req, state.signed_headers)
        req.headers["X-TC-Timestamp"] = ts
        req.headers.popall("X-TC-Token", None)
        if cred.access_token:
            req.headers["X-TC-Token"] = cred.access_token.reveal()
        pin_host(req)
        new = _TC3State(ts, state.service, state.signed_headers, state.unsigned_payload)
        sig = _tc3_signature(req, new, cred.secret_key.reveal_bytes(), payload_sha256, lower=True)
        date = datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d")
        req.headers["Authorization"] = (
            f"{ALGORITHM} Credential={cred.access_key}/{date}/{state.service}/tc3_request, "
            f"SignedHeaders={';'.join(state.signed_headers)}, Signature={sig}"
        )

    @staticmethod
    def _resign_legacy(req: SigningRequest, state: _LegacyState, cred: Credential, ts: str) -> None:
        fresh = {"SecretId": cred.access_key, "Timestamp": ts}
        params = [(k, fresh.get(k, v)) for k, v in state.params if k != "Token"]
        if cred.access_token:
            params.append(("Token", cred.access_token.reveal()))
        unsigned = tuple(p for p in params if p[0] != "Signature")
        sig = _legacy_signature(req, state, unsigned, cred.secret_key.reveal_bytes())
        params = [(k, sig if k == "Signature" else v) for k, v in params]
        encoded = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params)
        if state.in_body:
            req.body = encoded.encode()
        else:
            req.query = encoded

    # upstream -------------------------------------------------------------------------

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """The action ``parse`` read where the vendor reads it; another ``Action`` elsewhere
        is a 400, a REST path unclassified (:func:`._action_params.rpc_operation`)."""
        return rpc_operation(req, auth, body)

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal as TencentCloud API 3.0 SDKs read an error answer."""
        return json_error(
            {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}
        )

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://{service}.tencentcloudapi.com`` for TC3 (the SDK's default endpoint);
        ``None`` for v1, which names no service."""
        if not isinstance(auth.state, _TC3State):
            return None
        service = auth.state.service.lower()
        if not _HOST_LABELS.fullmatch(service):
            return None
        return f"https://{service}.{ROOT_DOMAIN}"


SIGNER = TencentSigner()
