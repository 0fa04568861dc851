"""Alibaba Cloud (``aliyun``) request signatures: the RPC ``HMAC-SHA1`` parameters (signature
v2, what key-proxy supports) and the ``ACS3-HMAC-SHA256`` header (signature v3, what today's
SDKs send by default).  One signer handles both and tells them apart by the request.

**RPC (v2).**  The credential travels as parameters, in the query or in an
``application/x-www-form-urlencoded`` body::

    ?Action=DescribeRegions&Version=2014-05-26&AccessKeyId=AK&SignatureMethod=HMAC-SHA1
     &SignatureVersion=1.0&SignatureNonce=<unique>&Timestamp=2024-01-01T00:00:00Z&Signature=<b64>

Every parameter of the query *and* of the form body except ``Signature`` is signed: names and
values are percent-decoded, sorted by name, re-encoded (only ``A-Z a-z 0-9 - _ . ~`` kept), joined
as ``n=v&...`` and the whole encoded once more: ``METHOD&%2F&<that>``.  The signature is
``base64(HMAC-SHA1(secret + "&", string))``.  Neither the path, the headers nor a non-form body
is covered, so such requests must use the path ``/`` and a non-empty body must be a form.

**ACS3.**  ``Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=<hex>``
with ``x-acs-date``, ``x-acs-signature-nonce`` and ``x-acs-content-sha256`` (hex SHA-256 of the
body).  The canonical request is ``METHOD \\n path \\n query \\n headers \\n signed-headers \\n
body-hash``; the query sorted by name with names and values encoded as above, ``name:value``
lines for the signed headers; the string to sign is ``ACS3-HMAC-SHA256 \\n hex(sha256(canonical
request))`` and the signature ``hex(HMAC-SHA256(secret, string))``.

Re-signing keeps the client's nonce (``SignatureNonce`` / ``x-acs-signature-nonce``): Alibaba
Cloud refuses a nonce it has seen under the same access key, so a replayed request is still
refused upstream.  Session tokens are ``SecurityToken`` (RPC) or ``x-acs-security-token`` with
``x-acs-accesskey-id`` (ACS3).  Not supported: ``ACS3-HMAC-SM3``/``ACS3-RSA-SHA256``, the ROA
``acs AK:signature`` header, bearer tokens and the v4 gateway signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
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
    HEX64,
    LOWER_HEX64,
    PRINTABLE_ID,
    V4_FIELDS,
    check_length,
    media_type,
    parse_signed_headers,
    pin_host,
    require_equal,
    split_auth_fields,
)
from keybroker.signers.encoding import decode_query, encode_unreserved

__all__ = [
    "ACS3_ALGORITHM",
    "RPC_SIGNATURE_METHOD",
    "SIGNER",
    "AliyunSigner",
    "acs3_canonical_query",
    "rpc_signature",
    "rpc_string_to_sign",
]

RPC_SIGNATURE_METHOD = "HMAC-SHA1"
ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FORM = "application/x-www-form-urlencoded"
_MAX_AUTH_LEN = 8192
_MAX_PARAMS = 1024
_MAX_SIGNED_HEADERS = 64

_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_NONCE = PRINTABLE_ID
_RPC_SIG = re.compile(r"[A-Za-z0-9+/]{27}=")  # base64 of a 20-byte HMAC-SHA1

#: RPC parameters the re-signing replaces (the rest is forwarded as sent).
_RPC_REPLACED = frozenset({"AccessKeyId", "Timestamp", "Signature", "SecurityToken"})
#: ACS3 headers that must be signed whenever the scheme is used.
_ACS3_REQUIRED = ("host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")
_ACS3_TOKEN_HEADERS = ("x-acs-accesskey-id", "x-acs-security-token")


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Alibaba Cloud signature: {message}")


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True, slots=True)
class _Param:
    """One ``name=value`` pair as sent: decoded at the byte level so two different wire forms
    never share a canonical form, plus the piece of text it came from."""

    name: str
    raw_name: bytes
    raw_value: bytes
    piece: str
    in_body: bool = False

    @property
    def value(self) -> str:
        return self.raw_value.decode("utf-8", "replace")


def _params(text: str, *, in_body: bool = False) -> list[_Param]:
    pieces = [piece for piece in text.split("&") if piece]
    out = [
        _Param(nb.decode("utf-8", "replace"), nb, vb, piece, in_body)
        for piece, (nb, vb) in zip(pieces, decode_query(text), strict=True)
    ]
    if len(out) > _MAX_PARAMS:
        raise _bad(f"more than {_MAX_PARAMS} parameters")
    return out


def _unique(params: list[_Param]) -> dict[str, _Param]:
    by_name: dict[str, _Param] = {}
    for p in params:
        if p.name in by_name:
            # The SDKs build parameters as a map; a repeated name has no single meaning.
            raise _bad(f"parameter {p.name!r} appears more than once")
        by_name[p.name] = p
    return by_name


def _parse_time(value: str, what: str) -> datetime:
    if not _TIMESTAMP.fullmatch(value):
        raise _bad(f"{what} must be YYYY-MM-DDTHH:MM:SSZ (UTC)")
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"{what} is not a valid date and time") from None


def _format_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime(_TIME_FORMAT)


def _hostname(host: str) -> str:
    name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.lower()


def _service(host: str) -> str | None:
    """The product code of an API host (``ecs`` for ``ecs.cn-hangzhou.aliyuncs.com``)."""
    name = _hostname(host)
    return name.split(".", 1)[0] if name.endswith(".aliyuncs.com") else None


# --------------------------------------------------------------------------- RPC (v2)


def rpc_string_to_sign(method: str, params: list[tuple[bytes, bytes]]) -> str:
    """``METHOD&%2F&encode(sorted n=v pairs)`` for decoded ``(name, value)`` byte pairs."""
    pairs = sorted(params, key=lambda p: p[0])
    canonical = "&".join(f"{encode_unreserved(n)}={encode_unreserved(v)}" for n, v in pairs)
    return f"{method.upper()}&%2F&{encode_unreserved(canonical.encode('ascii'))}"


def rpc_signature(secret: bytes, string_to_sign: str) -> str:
    """``base64(HMAC-SHA1(secret + "&", string_to_sign))``."""
    digest = hmac.new(secret + b"&", string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class _RpcState:
    """What ``parse`` found in an RPC request.  Never printed whole."""

    params: tuple[_Param, ...]
    signature: str
    body_form: bool  # the body's form parameters are part of ``params``

    def __repr__(self) -> str:
        return f"_RpcState(params={len(self.params)}, body_form={self.body_form})"

    def signed_pairs(self) -> list[tuple[bytes, bytes]]:
        return [(p.raw_name, p.raw_value) for p in self.params if p.name != "Signature"]


def _is_form(req: SigningRequest) -> bool:
    return media_type(req) == _FORM


def _body_params(req: SigningRequest) -> list[_Param]:
    if not req.body:
        return []
    if not _is_form(req):
        raise _bad(
            "an RPC request body must be application/x-www-form-urlencoded "
            "(the signature covers form parameters only)"
        )
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the form body is not valid UTF-8") from None
    return _params(text, in_body=True)


def _rpc_field(get: dict[str, _Param], name: str, pattern: re.Pattern[str], rule: str) -> str:
    param = get.get(name)
    if param is None:
        raise _bad(f"parameter {name} is missing")
    if not pattern.fullmatch(param.value):
        raise _bad(f"parameter {name} must be {rule}")
    return param.value


def _parse_rpc(req: SigningRequest) -> ParsedAuth:
    if req.path not in ("", "/"):
        raise _bad("RPC-signed requests must use the path '/' (the signature does not cover it)")
    body = _body_params(req)
    params = _params(req.query) + body
    get = _unique(params)
    ak = _rpc_field(get, "AccessKeyId", PRINTABLE_ID, "1-256 printable ASCII characters")
    signature = _rpc_field(get, "Signature", _RPC_SIG, "a base64 HMAC-SHA1 (28 characters)")
    method = get.get("SignatureMethod")
    if method is None or method.value != RPC_SIGNATURE_METHOD:
        raise _bad(f"parameter SignatureMethod must be {RPC_SIGNATURE_METHOD}")
    version = get.get("SignatureVersion")
    if version is None or version.value != "1.0":
        raise _bad("parameter SignatureVersion must be 1.0")
    _rpc_field(get, "SignatureNonce", _NONCE, "1-256 printable ASCII characters")
    stamp = get.get("Timestamp")
    if stamp is None:
        raise _bad("parameter Timestamp is missing")
    signed_at = _parse_time(stamp.value, "parameter Timestamp")
    action, region = get.get("Action"), get.get("RegionId")
    return ParsedAuth(
        access_key=ak,
        signed_at=signed_at,
        region=region.value if region else None,
        service=_service(req.host),
        body=BodyPolicy.BUFFER,
        in_query=not get["Signature"].in_body,
        action=action.value if action else None,
        state=_RpcState(tuple(params), signature, bool(body)),
        signature=base64.b64decode(signature),
    )


def _rpc_piece(name: str, value: str) -> str:
    return f"{encode_unreserved(name.encode())}={encode_unreserved(value.encode())}"


def _resign_rpc(req: SigningRequest, state: _RpcState, cred: Credential, now: datetime) -> None:
    located = {p.name: p.in_body for p in state.params}
    fresh = {"AccessKeyId": cred.access_key, "Timestamp": _format_time(now)}
    if cred.access_token:
        fresh["SecurityToken"] = cred.access_token.reveal()
    kept = [p for p in state.params if p.name not in _RPC_REPLACED]
    pairs = [(p.raw_name, p.raw_value) for p in kept]
    pairs += [(k.encode(), v.encode()) for k, v in fresh.items()]
    signature = rpc_signature(cred.secret_key.reveal_bytes(), rpc_string_to_sign(req.method, pairs))
    fresh["Signature"] = signature
    query = [p.piece for p in kept if not p.in_body]
    body = [p.piece for p in kept if p.in_body]
    for name, value in fresh.items():
        # Each replaced parameter goes back where the client put it; a new SecurityToken
        # goes next to AccessKeyId.
        in_body = located.get(name, located["AccessKeyId"])
        (body if in_body else query).append(_rpc_piece(name, value))
    req.query = "&".join(query)
    if state.body_form or body:
        req.body = "&".join(body).encode("ascii")
    for name in _ACS3_TOKEN_HEADERS:  # never forward the proxy's ACS3 token headers
        req.headers.popall(name, None)
    _align_rpc_headers(req, {p.name: p.value for p in kept})


def _align_rpc_headers(req: SigningRequest, params: dict[str, str]) -> None:
    # The SDKs also send x-acs-action/x-acs-version with RPC requests, outside the signature:
    # forward them only as the signed Action/Version say.
    for header, param in (("x-acs-action", "Action"), ("x-acs-version", "Version")):
        if header in req.headers:
            req.headers.popall(header)
            if param in params:
                req.headers[header] = params[param]


# --------------------------------------------------------------------------- ACS3 (v3)


def acs3_canonical_query(raw_query: str) -> str:
    """The ACS3 canonical query: sorted by name, names and values re-encoded."""
    pairs = sorted((p.raw_name, p.raw_value) for p in _params(raw_query))
    return "&".join(f"{encode_unreserved(n)}={encode_unreserved(v)}" for n, v in pairs)


@dataclass(frozen=True, slots=True)
class _Acs3State:
    """What ``parse`` found in an ACS3 request.  Never printed whole."""

    signed_headers: tuple[str, ...]
    signature: str
    content_sha256: str

    def __repr__(self) -> str:
        return f"_Acs3State(signed_headers={self.signed_headers!r})"


def _acs3_fields(value: str) -> dict[str, str]:
    check_length(value, _MAX_AUTH_LEN, _bad)
    if not value.startswith(ACS3_ALGORITHM + " "):
        if value.startswith("ACS3-"):
            raise _bad(f"only {ACS3_ALGORITHM} is supported among the ACS3 algorithms")
        raise _bad(f"Authorization must start with '{ACS3_ALGORITHM} '")
    return split_auth_fields(value[len(ACS3_ALGORITHM) + 1 :], V4_FIELDS, _bad)


def _acs3_signed_headers(value: str, req: SigningRequest) -> tuple[str, ...]:
    names = parse_signed_headers(value, _bad, limit=_MAX_SIGNED_HEADERS)
    for name in _ACS3_REQUIRED:
        if name not in names:
            raise _bad(f"SignedHeaders must include {name}")
    for present in {k.lower() for k in req.headers}:
        # An unsigned x-acs-* header (a token, an action) would reach the upstream unchecked.
        if (present.startswith("x-acs-") or present == "content-type") and present not in names:
            raise _bad(f"header {present!r} is present but not signed")
    for name in names:
        if name != "host" and len(req.headers.getall(name, [])) != 1:
            raise _bad(f"signed header {name!r} must appear exactly once")
    return names


def _parse_acs3(req: SigningRequest) -> ParsedAuth:
    values = req.headers.getall("Authorization")
    if len(values) != 1:
        raise _bad("Authorization appears more than once")
    fields = _acs3_fields(values[0])
    if not PRINTABLE_ID.fullmatch(fields["Credential"]):
        raise _bad("Credential must be an access key id (1-256 printable ASCII characters)")
    if not LOWER_HEX64.fullmatch(fields["Signature"]):
        raise _bad("Signature must be 64 lower-case hex digits")
    names = _acs3_signed_headers(fields["SignedHeaders"], req)
    signed_at = _parse_time(req.headers["x-acs-date"].strip(), "x-acs-date")
    if not _NONCE.fullmatch(req.headers["x-acs-signature-nonce"].strip()):
        raise _bad("x-acs-signature-nonce must be 1-256 printable ASCII characters")
    claimed = req.headers["x-acs-content-sha256"].strip()
    if not HEX64.fullmatch(claimed):
        raise _bad("x-acs-content-sha256 must be 64 hex digits")
    _unique(_params(req.query))
    return ParsedAuth(
        access_key=fields["Credential"],
        signed_at=signed_at,
        service=_service(req.host),
        body=BodyPolicy.BUFFER,
        payload_sha256=claimed.lower(),
        action=req.headers.get("x-acs-action"),
        state=_Acs3State(names, fields["Signature"], claimed),
        signature=bytes.fromhex(fields["Signature"]),
    )


def _acs3_canonical_request(req: SigningRequest, state: _Acs3State) -> str:
    lines = []
    for name in state.signed_headers:
        value = req.host if name == "host" else req.headers.get(name, "")
        lines.append(f"{name}:{value.strip()}\n")
    return "\n".join(
        [
            req.method.upper(),
            req.path or "/",
            acs3_canonical_query(req.query),
            "".join(lines),
            ";".join(state.signed_headers),
            state.content_sha256,
        ]
    )


def _acs3_signature(req: SigningRequest, state: _Acs3State, secret: bytes) -> str:
    canonical = _acs3_canonical_request(req, state)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    to_sign = f"{ACS3_ALGORITHM}\n{digest}"
    return hmac.new(secret, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _resign_acs3(req: SigningRequest, state: _Acs3State, cred: Credential, now: datetime) -> None:
    names = set(state.signed_headers) - set(_ACS3_TOKEN_HEADERS)
    for header in _ACS3_TOKEN_HEADERS:
        req.headers.popall(header, None)
    if cred.access_token:
        req.headers["x-acs-accesskey-id"] = cred.access_key
        req.headers["x-acs-security-token"] = cred.access_token.reveal()
        names.update(_ACS3_TOKEN_HEADERS)
    req.headers["x-acs-date"] = _format_time(now)
    pin_host(req)
    fresh = _Acs3State(tuple(sorted(names)), "", state.content_sha256)
    signature = _acs3_signature(req, fresh, cred.secret_key.reveal_bytes())
    req.headers["Authorization"] = (
        f"{ACS3_ALGORITHM} Credential={cred.access_key},"
        f"SignedHeaders={';'.join(fresh.signed_headers)},Signature={signature}"
    )


# --------------------------------------------------------------------------- the signer


def _has_rpc_names(text: str) -> bool:
    names = {piece.partition("=")[0] for piece in text.split("&")}
    return "AccessKeyId" in names and "Signature" in names


class AliyunSigner(SignerBase):
    """Alibaba Cloud RPC ``HMAC-SHA1`` and ``ACS3-HMAC-SHA256``, detected per request."""

    vendor: ClassVar[str] = "aliyun"
    public_domains: ClassVar[tuple[str, ...]] = (".aliyuncs.com",)
    #: customers' load balancers (ALB/NLB DNS names), database and Elasticsearch instances
    excluded_hosts: ClassVar[tuple[str, ...]] = (
        "*.alb.aliyuncs.com",
        "*.nlb.aliyuncs.com",
        "*.rds.aliyuncs.com",
        "*.elasticsearch.aliyuncs.com",
    )
    #: RPC requests may carry AccessKeyId/Signature in a form body: read it before parse.
    body_credentials: ClassVar[bool] = True
    #: the parameter naming the credential (read from a long body's first bytes)
    body_credential_param: ClassVar[str] = "AccessKeyId"

    def __repr__(self) -> str:
        return "AliyunSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for an ``ACS3-`` Authorization, or ``AccessKeyId`` and ``Signature`` parameters
        in the query or a form body."""
        if req.headers.get("Authorization", "").startswith("ACS3-"):
            return True
        if "Authorization" in req.headers:
            return False
        if _has_rpc_names(req.query):
            return True
        if req.body and _is_form(req):
            return _has_rpc_names(req.body.decode("utf-8", "replace"))
        return False

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse either scheme.  Raises ``MalformedSignature`` naming the faulty part."""
        if "Authorization" in req.headers:
            auth = req.headers.get("Authorization", "")
            if auth.startswith("acs "):
                raise _bad(f"ROA 'acs' signatures are not supported; use {ACS3_ALGORITHM}")
            return _parse_acs3(req)
        query = req.query
        body = req.body.decode("utf-8", "replace") if req.body and _is_form(req) else ""
        if not (_has_rpc_names(query) or _has_rpc_names(body)):
            raise _bad("no ACS3 Authorization header and no AccessKeyId/Signature RPC parameters")
        return _parse_rpc(req)

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        require_equal(cred.access_key, auth.access_key)
        secret = cred.secret_key.reveal_bytes()
        state = auth.state
        if isinstance(state, _RpcState):
            require_equal(rpc_signature(secret, self.string_to_sign(req, auth)), state.signature)
            return
        acs3 = self._acs3(auth)
        data = body if body is not None else (req.body or b"")
        require_equal(hashlib.sha256(data).hexdigest(), acs3.content_sha256.lower())
        require_equal(_acs3_signature(req, acs3, secret), acs3.signature)

    def string_to_sign(self, req: SigningRequest, auth: ParsedAuth) -> str:
        """The RPC string to sign, or the ACS3 canonical request (diagnostics, vectors)."""
        if isinstance(auth.state, _RpcState):
            return rpc_string_to_sign(req.method, auth.state.signed_pairs())
        return _acs3_canonical_request(req, self._acs3(auth))

    @staticmethod
    def _acs3(auth: ParsedAuth) -> _Acs3State:
        if not isinstance(auth.state, _Acs3State):
            raise TypeError("ParsedAuth was not produced by AliyunSigner.parse")
        return auth.state

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now``, in the scheme the client used."""
        if isinstance(auth.state, _RpcState):
            _resign_rpc(req, auth.state, cred, now)
        else:
            _resign_acs3(req, self._acs3(auth), cred, now)

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
        """The refusal as Alibaba Cloud's SDKs read an error answer."""
        return json_error({"Code": code, "Message": message, "RequestId": request_id})

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://<host>`` when the request already names an Alibaba Cloud API host.

        Alibaba Cloud has one endpoint per product and region, and neither scheme names the
        product, so a request addressed to the proxy itself needs the account's ``Upstream``.
        """
        name = _hostname(req.host)
        if any(name.endswith(d) for d in self.public_domains):
            return f"https://{name}"
        return None


SIGNER = AliyunSigner()
