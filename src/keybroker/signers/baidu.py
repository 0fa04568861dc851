"""Baidu AI Cloud's ``bce-auth-v1`` authentication string, header and presigned-URL forms.

::

    Authorization: bce-auth-v1/{ak}/{timestamp}/{expirationPeriodInSeconds}/{signedHeaders}/{hex}
    x-bce-date: 2015-04-27T08:23:49Z

or the same string in an ``authorization`` query parameter (BOS presigned URLs).  The signature
is ``hex(HMAC-SHA256(signingKey, canonicalRequest))`` with ``signingKey =
hex(HMAC-SHA256(sk, "bce-auth-v1/{ak}/{timestamp}/{expiration}"))``: the validity period is
part of what is signed, and the request is valid from ``timestamp`` for that many seconds.

The canonical request is ``method \\n uri \\n query \\n headers`` (``baidubce.auth.bce_v1_signer``
is the reference):

* uri: the path, each ``/``-separated segment decoded and re-encoded with only
  ``A-Z a-z 0-9 - _ . ~`` kept;
* query: every ``name=value`` pair (the ``authorization`` parameter excepted) encoded the same
  way, sorted as whole strings;
* headers: ``name:value`` (both encoded, empty values left out), sorted, for ``host``,
  ``content-md5``, ``content-length``, ``content-type`` when ``signedHeaders`` is empty, else for
  the listed names — and, in both cases, for every ``x-bce-*`` header: the SDK always signs
  those, so an unsigned ``x-bce-*`` header can never ride along.

The body is not covered, except through the headers that describe it: ``x-bce-content-sha256``
(checked by the proxy while streaming) and ``Content-MD5`` (checked here on the buffered body).
Temporary credentials add ``x-bce-security-token`` (a header, or a query parameter in
presigned URLs), signed like the rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import unquote_to_bytes

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
from keybroker.signers.common import (
    HEX64,
    LOWER_HEX64,
    check_length,
    host_name,
    parse_signed_headers,
    parse_utc,
    pin_host,
    require_equal,
    state_of,
)
from keybroker.signers.encoding import decode_query, encode_unreserved, segment_encoded_uri

__all__ = ["PREFIX", "SIGNER", "BaiduSigner", "canonical_query", "canonical_uri"]

PREFIX = "bce-auth-v1"
BCE_HEADER = "x-bce-"
TOKEN_HEADER = "x-bce-security-token"
DEFAULT_HEADERS = ("host", "content-md5", "content-length", "content-type")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_AUTH_LEN = 8192
_MAX_SIGNED_HEADERS = 64

_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_EXPIRATION = re.compile(r"[0-9]{1,9}")
_ACCESS_KEY = re.compile(r"[\x21-\x2e\x30-\x7e]{1,256}")  # printable ASCII, no "/"

#: BCE API hosts are ``<service>.<region>.baidubce.com``; BOS is ``[bucket.]<region>.bcebos.com``.
_API_SUFFIXES = (".baidubce.com", ".bcebos.com")


# --------------------------------------------------------------------------- canonical form


def canonical_uri(raw_path: str) -> str:
    """Each segment decoded and re-encoded; ``/`` kept (``%2F`` inside a segment stays)."""
    return segment_encoded_uri(raw_path)


def _query_pairs(raw_query: str) -> list[tuple[str, bytes, bytes]]:
    """``(decoded name, name bytes, value bytes)``, decoded at the byte level."""
    return [(nb.decode("utf-8", "replace"), nb, vb) for nb, vb in decode_query(raw_query)]


def canonical_query(raw_query: str) -> str:
    """Encoded ``name=value`` strings, sorted; the ``authorization`` parameter is left out."""
    # encode_unreserved keeps exactly the set the SDK keeps (letters, digits, .~-_).
    items = [
        f"{encode_unreserved(nb)}={encode_unreserved(vb)}"
        for name, nb, vb in _query_pairs(raw_query)
        if name.lower() != "authorization"
    ]
    return "&".join(sorted(items))


def _header_value(req: SigningRequest, name: str) -> str:
    return req.host if name == "host" else req.headers.get(name, "")


def _signed_names(req: SigningRequest, listed: tuple[str, ...]) -> list[str]:
    """The header names that enter the canonical form: listed (or default) + every x-bce-*."""
    names = set(listed or DEFAULT_HEADERS)
    names.update(k.lower() for k in req.headers if k.lower().startswith(BCE_HEADER))
    return [n for n in names if _header_value(req, n).strip()]


def canonical_headers(req: SigningRequest, listed: tuple[str, ...]) -> str:
    """The canonical headers for a ``signedHeaders`` list (empty: the default set)."""
    lines = []
    for name in _signed_names(req, listed):
        value = _header_value(req, name).strip()
        lines.append(f"{encode_unreserved(name.encode())}:{encode_unreserved(value.encode())}")
    return "\n".join(sorted(lines))


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _State:
    """What ``parse`` found, carried to ``verify``/``resign``.  Never printed whole."""

    access_key: str
    timestamp: str
    expiration: int
    signed_headers: tuple[str, ...]
    signature: str
    in_query: bool
    check_md5: bool

    def __repr__(self) -> str:
        return (
            f"_State(timestamp={self.timestamp!r}, expiration={self.expiration}, "
            f"signed_headers={self.signed_headers!r})"
        )

    def prefix(self) -> str:
        return f"{PREFIX}/{self.access_key}/{self.timestamp}/{self.expiration}"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Baidu signature: {message}")


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    return parse_signed_headers(
        value, _bad, limit=_MAX_SIGNED_HEADERS, label="signedHeaders", allow_empty=True
    )


def _parse_timestamp(value: str) -> datetime:
    return parse_utc(
        value,
        "timestamp",
        _bad,
        pattern=_TIMESTAMP,
        time_format=_TIME_FORMAT,
        shape="YYYY-MM-DDTHH:MM:SSZ",
    )


def _parse_auth_string(value: str, in_query: bool) -> tuple[_State, datetime]:
    check_length(value, _MAX_AUTH_LEN, _bad, "the authentication string")
    parts = value.split("/")
    if parts[0] != PREFIX:
        raise _bad(f"the authentication string must start with '{PREFIX}/'")
    if len(parts) != 6:
        raise _bad(
            f"the authentication string must be {PREFIX}/ak/timestamp/expiration/"
            f"signedHeaders/signature (6 parts separated by '/'), got {len(parts)} part(s)"
        )
    _, ak, timestamp, expiration, headers, signature = parts
    if not _ACCESS_KEY.fullmatch(ak):
        raise _bad("access key is empty or has invalid characters")
    signed_at = _parse_timestamp(timestamp)
    if not _EXPIRATION.fullmatch(expiration):
        raise _bad("expiration must be a number of seconds (signatures that never expire "
                   "are refused)")  # fmt: skip
    names = _parse_signed_headers(headers)
    if not LOWER_HEX64.fullmatch(signature):
        raise _bad("signature must be 64 lower-case hex digits")
    state = _State(ak, timestamp, int(expiration), names, signature, in_query, False)
    return state, signed_at


def _check_single_headers(req: SigningRequest, names: list[str]) -> None:
    for name in names:
        if name != "host" and len(req.headers.getall(name, [])) > 1:
            raise _bad(f"signed header {name!r} appears more than once")


def _auth_param(req: SigningRequest) -> str | None:
    values = [vb for name, _, vb in _query_pairs(req.query) if name == "authorization"]
    if len(values) > 1:
        raise _bad("the authorization query parameter appears more than once")
    return values[0].decode("utf-8", "replace") if values else None


def _body_policy(req: SigningRequest, names: list[str]) -> tuple[BodyPolicy, str | None, bool]:
    """``(policy, claimed sha256, check Content-MD5)``."""
    claimed = req.headers.get("x-bce-content-sha256", "").strip()
    if HEX64.fullmatch(claimed):
        return BodyPolicy.CLAIMED_SHA256, claimed.lower(), False
    if "content-md5" in names:
        return BodyPolicy.BUFFER, None, True
    return BodyPolicy.UNSIGNED, None, False


def _host_parts(host: str) -> tuple[str | None, str | None]:
    """``(service, region)`` from a public API host name, when it is one."""
    name = host_name(host)
    if name.endswith(".bcebos.com"):
        labels = name[: -len(".bcebos.com")].split(".")
        return "bos", labels[-1] or None
    if name.endswith(".baidubce.com"):
        labels = name[: -len(".baidubce.com")].split(".")
        return labels[0] or None, labels[1] if len(labels) > 1 else None
    return None, None


# --------------------------------------------------------------------------- the signer


class BaiduSigner(SignerBase):
    """Baidu AI Cloud ``bce-auth-v1`` (Authorization header and presigned query)."""

    vendor: ClassVar[str] = "baidu"
    public_domains: ClassVar[tuple[str, ...]] = _API_SUFFIXES
    #: CFC HTTP-trigger endpoints (customers' functions)
    excluded_hosts: ClassVar[tuple[str, ...]] = ("*.cfc-execute.*.baidubce.com",)

    def __repr__(self) -> str:
        return "BaiduSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True for a ``bce-auth-v1/`` Authorization header or ``authorization`` parameter."""
        if req.headers.get("Authorization", "").startswith(PREFIX + "/"):
            return True
        if "authorization=" not in req.query.lower():
            return False
        try:
            return (_auth_param(req) or "").startswith(PREFIX + "/")
        except MalformedSignature:
            return True  # ours, and parse will say what is wrong with it

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the authentication string.  Raises ``MalformedSignature`` naming the fault."""
        headers = req.headers.getall("Authorization", [])
        param = _auth_param(req)
        if len(headers) > 1:
            raise _bad("Authorization appears more than once")
        if headers and param is not None:
            raise _bad("both an Authorization header and an authorization parameter")
        if not headers and param is None:
            raise _bad("no Authorization header and no authorization query parameter")
        state, signed_at = _parse_auth_string(headers[0] if headers else str(param), not headers)
        names = _signed_names(req, state.signed_headers)
        _check_single_headers(req, names)
        body, claimed, check_md5 = _body_policy(req, names)
        service, region = _host_parts(req.host)
        return ParsedAuth(
            access_key=state.access_key,
            signed_at=signed_at,
            region=region,
            service=service,
            body=body,
            payload_sha256=claimed,
            in_query=state.in_query,
            expires=state.expiration,
            state=replace(state, check_md5=check_md5),
            signature=bytes.fromhex(state.signature),
        )

    # verify ---------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``; check Content-MD5 against a buffered body.
        Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        require_equal(cred.access_key, state.access_key)
        require_equal(self.signature(req, auth, cred), state.signature)
        if state.check_md5:
            claimed = req.headers.get("content-md5", "").strip()
            # MD5 because that is what the Content-MD5 header carries.
            digest = hashlib.md5(body or b"", usedforsecurity=False).digest()
            require_equal(base64.b64encode(digest).decode(), claimed)

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "BaiduSigner")

    def canonical_request(self, req: SigningRequest, auth: ParsedAuth) -> str:
        """The canonical request ``verify`` would sign (for diagnostics and test vectors)."""
        state = self._state(auth)
        return "\n".join(
            [
                req.method.upper(),
                canonical_uri(req.path),
                canonical_query(req.query),
                canonical_headers(req, state.signed_headers),
            ]
        )

    def signature(self, req: SigningRequest, auth: ParsedAuth, cred: Credential) -> str:
        """The hex signature ``cred`` makes over ``req`` as ``auth`` describes it."""
        state = self._state(auth)
        prefix = f"{PREFIX}/{cred.access_key}/{state.timestamp}/{state.expiration}"
        signing_key = _hmac_hex(cred.secret_key.reveal_bytes(), prefix)
        return _hmac_hex(signing_key.encode(), self.canonical_request(req, auth))

    # resign ---------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now`` with the same validity period.

        The new string always lists its headers explicitly (every ``x-bce-*`` one included),
        so the Baidu service and the SDK agree on what is signed; ``content-length`` is listed
        only when non-zero, since an empty body may travel without that header.
        """
        state = self._state(auth)
        timestamp = now.astimezone(UTC).strftime(_TIME_FORMAT)
        pin_host(req)
        if "x-bce-date" in req.headers:
            req.headers["x-bce-date"] = timestamp
        if state.in_query:
            self._swap_query_token(req, cred)
        else:
            self._swap_header_token(req, cred)
        names = self._resign_names(req, state)
        new_state = replace(
            state, access_key=cred.access_key, timestamp=timestamp, signed_headers=names
        )
        signature = self.signature(req, replace(auth, state=new_state), cred)
        value = f"{new_state.prefix()}/{';'.join(names)}/{signature}"
        if state.in_query:
            kept = [p for p in req.query.split("&") if p and _param_name(p) != "authorization"]
            req.query = "&".join([*kept, f"authorization={encode_unreserved(value.encode())}"])
        else:
            req.headers["Authorization"] = value

    @staticmethod
    def _resign_names(req: SigningRequest, state: _State) -> tuple[str, ...]:
        names = set(_signed_names(req, state.signed_headers)) | {"host"}
        if req.headers.get("content-length", "").strip() == "0":
            names.discard("content-length")
        return tuple(sorted(names))

    @staticmethod
    def _swap_header_token(req: SigningRequest, cred: Credential) -> None:
        req.headers.popall(TOKEN_HEADER, None)
        if cred.access_token:
            req.headers[TOKEN_HEADER] = cred.access_token.reveal()

    @staticmethod
    def _swap_query_token(req: SigningRequest, cred: Credential) -> None:
        kept = [p for p in req.query.split("&") if p and _param_name(p) != TOKEN_HEADER]
        if cred.access_token:
            kept.append(f"{TOKEN_HEADER}={encode_unreserved(cred.access_token.reveal_bytes())}")
        req.query = "&".join(kept)

    # upstream -------------------------------------------------------------------------

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal as the BCE SDKs read an error answer."""
        return json_error({"code": code, "message": message, "requestId": request_id})

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://host`` when the signed Host is itself a public API host (the client
        resolved the vendor's name to keybroker); ``None`` otherwise — the authentication
        string names no service or region, so an ``Upstream`` must be configured."""
        name = host_name(req.host)
        if any(name.endswith(suffix) for suffix in _API_SUFFIXES):
            return f"https://{name}"
        return None


def _param_name(part: str) -> str:
    name = part.partition("=")[0]
    return unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace").lower()


SIGNER = BaiduSigner()
