"""Qiniu's two management-request signatures: ``QBox`` and ``Qiniu`` (HMAC-SHA1).

Both put ``<scheme> <AccessKey>:<urlsafe-base64(HMAC-SHA1(SecretKey, data))>`` in the
Authorization header; they differ in ``data``:

* ``QBox`` (the older "管理凭证")::

      <path>[?<query>]\\n[<body>]

  the body only when ``Content-Type`` is exactly ``application/x-www-form-urlencoded``.

* ``Qiniu`` (the newer one, ``QiniuMacAuth`` in the SDKs)::

      <METHOD> <path>[?<query>]\\nHost: <host>[\\nContent-Type: <type>]
      [\\n<X-Qiniu-* headers>]\\n\\n[<body>]      (one line)

  ``X-Qiniu-*`` headers as ``Canonical-Name: value``, sorted by name; the body when there is
  one and the content type is set and is not ``application/octet-stream``.

Path and query are signed exactly as they travel (raw, percent-encoded as sent).  Neither
scheme signs a time, except that SDKs send (and sign) ``X-Qiniu-Date: YYYYMMDDTHHMMSSZ`` with
the ``Qiniu`` scheme by default: when present it becomes ``ParsedAuth.signed_at`` and is
refreshed on re-signing.  A ``QBox`` signature, or a ``Qiniu`` one without that header, can
be replayed for as long as the proxy secret is valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers.base import (
    BodyPolicy,
    ErrorAnswer,
    ParsedAuth,
    SignerBase,
    SigningRequest,
    json_error,
)
from keybroker.signers.common import pin_host, require_equal, state_of

__all__ = ["SIGNER", "QiniuSigner", "signing_data"]

QBOX = "QBox"
QINIU = "Qiniu"
FORM = "application/x-www-form-urlencoded"
OCTET_STREAM = "application/octet-stream"
_DATE_HEADER = "X-Qiniu-Date"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_HEADER_PREFIX = "x-qiniu-"
_MAX_AUTH_LEN = 1024

_ACCESS_KEY = re.compile(r"[\x21-\x39\x3b-\x7e]{1,256}")  # printable ASCII except ':'
_SIGNATURE = re.compile(r"[A-Za-z0-9_\-]{27}=?")  # urlsafe base64 of 20 bytes
_X_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")


@dataclass(frozen=True, slots=True)
class _State:
    """What ``parse`` found, carried to ``verify``/``resign``."""

    scheme: str  # QBOX or QINIU
    access_key: str
    signature: bytes
    x_date: str | None = None

    def __repr__(self) -> str:
        return f"_State(scheme={self.scheme!r})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Qiniu signature: {message}")


# --------------------------------------------------------------------------- signing data


def _path_with_query(req: SigningRequest) -> str:
    return f"{req.path}?{req.query}" if req.query else req.path


def _content_type(req: SigningRequest) -> str:
    return req.headers.get("Content-Type", "")


def body_is_signed(scheme: str, content_type: str) -> bool:
    """Whether ``scheme`` covers the body of a request with this content type."""
    if scheme == QBOX:
        return content_type == FORM
    return bool(content_type) and content_type != OCTET_STREAM


def _canonical_name(name: str) -> str:
    # Go's textproto.CanonicalMIMEHeaderKey, which the SDKs apply to X-Qiniu-* names.
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _qiniu_headers(req: SigningRequest) -> str:
    found: dict[str, str] = {}
    for name, value in req.headers.items():
        if name.lower().startswith(_HEADER_PREFIX) and len(name) > len(_HEADER_PREFIX):
            canonical = _canonical_name(name)
            if canonical in found:
                raise _bad(f"header {canonical!r} appears more than once")
            found[canonical] = value
    return "\n".join(f"{name}: {found[name]}" for name in sorted(found))


def signing_data(scheme: str, req: SigningRequest, body: bytes | None) -> bytes:
    """The bytes ``scheme`` signs for ``req`` (exposed for test vectors).

    Raises ``MalformedSignature`` when an ``X-Qiniu-*`` header is repeated.
    """
    content_type = _content_type(req)
    include_body = body_is_signed(scheme, content_type) and bool(body)
    if scheme == QBOX:
        head = f"{_path_with_query(req)}\n"
    else:
        head = f"{req.method} {_path_with_query(req)}\nHost: {req.host}"
        if content_type:
            head += f"\nContent-Type: {content_type}"
        extra = _qiniu_headers(req)
        if extra:
            head += f"\n{extra}"
        head += "\n\n"
    data = head.encode("utf-8", "surrogateescape")
    return data + body if include_body and body else data


def _sign(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha1).digest()


def _encode_signature(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------- parsing


def _split_authorization(req: SigningRequest) -> tuple[str, str, bytes]:
    values = req.headers.getall("Authorization", [])
    if len(values) != 1:
        raise _bad("exactly one Authorization header is required")
    value = values[0]
    if len(value) > _MAX_AUTH_LEN:
        raise _bad(f"Authorization is longer than {_MAX_AUTH_LEN} characters")
    scheme, _, token = value.partition(" ")
    if scheme not in (QBOX, QINIU):
        raise _bad("Authorization must start with 'QBox ' or 'Qiniu '")
    access_key, colon, signature = token.strip().partition(":")
    if not colon:
        raise _bad("the token must be AccessKey:Signature")
    if not _ACCESS_KEY.fullmatch(access_key):
        raise _bad("the access key is empty or has invalid characters")
    if not _SIGNATURE.fullmatch(signature):
        raise _bad("the signature must be the URL-safe base64 of 20 bytes")
    try:
        digest = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        raise _bad("the signature is not URL-safe base64") from None
    if _encode_signature(digest).rstrip("=") != signature.rstrip("="):
        # the last character's unused bits set: four spellings of one digest, of which the
        # vendor's string comparison accepts one
        raise _bad("the signature is not canonical URL-safe base64")
    return scheme, access_key, digest


def _parse_x_date(req: SigningRequest) -> tuple[str | None, datetime | None]:
    values = req.headers.getall(_DATE_HEADER, [])
    if not values:
        return None, None
    if len(values) > 1:
        raise _bad(f"{_DATE_HEADER} appears more than once")
    value = values[0]
    if not _X_DATE.fullmatch(value):
        raise _bad(f"{_DATE_HEADER} must be YYYYMMDDTHHMMSSZ")
    try:
        when = datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"{_DATE_HEADER} is not a valid date and time") from None
    return value, when


# --------------------------------------------------------------------------- the signer


class QiniuSigner(SignerBase):
    """Qiniu ``QBox`` and ``Qiniu`` management signatures (HMAC-SHA1)."""

    vendor: ClassVar[str] = "qiniu"
    public_domains: ClassVar[tuple[str, ...]] = (
        ".qiniuapi.com",
        ".qiniu.com",
        ".qbox.me",
        ".qiniup.com",
    )
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return "QiniuSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for an Authorization header that starts with ``QBox `` or ``Qiniu ``."""
        value = req.headers.get("Authorization", "")
        return value.startswith((QBOX + " ", QINIU + " "))

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the Authorization header.  Raises ``MalformedSignature``."""
        scheme, access_key, digest = _split_authorization(req)
        x_date, signed_at = (None, None)
        if scheme == QINIU:
            x_date, signed_at = _parse_x_date(req)
            _qiniu_headers(req)  # a repeated X-Qiniu-* header is refused here, not later
        signed = body_is_signed(scheme, _content_type(req))
        return ParsedAuth(
            access_key=access_key,
            signed_at=signed_at,
            body=BodyPolicy.BUFFER if signed else BodyPolicy.UNSIGNED,
            state=_State(scheme, access_key, digest, x_date),
            signature=digest,
        )

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "QiniuSigner")

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        require_equal(cred.access_key, state.access_key)
        data = signing_data(state.scheme, req, body)
        require_equal(_sign(cred.secret_key.reveal_bytes(), data), state.signature)

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred``, in the same scheme, for ``req.host``.

        ``X-Qiniu-Date`` is set to ``now`` when the client sent one.  Raises
        ``MalformedSignature`` when an ``X-Qiniu-*`` header is repeated.
        """
        state = self._state(auth)
        if state.x_date is not None:
            req.headers[_DATE_HEADER] = now.astimezone(UTC).strftime(_DATE_FORMAT)
        pin_host(req)
        data = signing_data(state.scheme, req, body)
        signature = _encode_signature(_sign(cred.secret_key.reveal_bytes(), data))
        req.headers["Authorization"] = f"{state.scheme} {cred.access_key}:{signature}"

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal as Qiniu's SDKs read an error answer."""
        return json_error({"error": f"{code}: {message}", "reqid": request_id})

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``None``: Qiniu's API is spread over many hosts (rs, rsf, api, uc, fusion, ...) and
        neither scheme names the one meant, so native mode needs ``Upstream``."""
        return None


SIGNER = QiniuSigner()
