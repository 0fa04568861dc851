"""Volcengine's ``HMAC-SHA256`` request signature (OpenAPI "签名方法"), header and query forms.

Header form::

    Authorization: HMAC-SHA256 Credential=AK/20240101/cn-beijing/iam/request,
                   SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=<hex>
    X-Date: 20240101T000000Z
    X-Content-Sha256: <hex sha256 of the body>

Query (presigned) form: ``X-Algorithm``, ``X-Credential``, ``X-Date``, ``X-SignedHeaders``,
``X-SignedQueries``, ``X-NotSignBody``, ``X-Signature`` and, outside the signature,
``X-Security-Token``.

The string to sign is ``HMAC-SHA256 \\n X-Date \\n scope \\n hex(sha256(canonical request))``; the
key is derived ``kSecret -> date -> region -> service -> "request"``.  The canonical request is
built the way the vendor SDKs build it (``volcenginesdkcore.signv4`` is the reference):

* path: percent-decoded, then each segment re-encoded with only ``A-Z a-z 0-9 - _ . ~`` kept;
* query: names and values percent-decoded (``+`` is a space), re-encoded the same way, sorted by
  encoded name; repeated names keep their order (the documented rule — the Python SDK cannot
  sign repeated names at all);
* headers: the names listed in ``SignedHeaders``, in that order, ``name:trimmed value``; the
  ``host`` value is the Host really used, without a ``:80``/``:443`` suffix;
* payload: the hex SHA-256 of the body.

key-proxy instead signs the percent-decoded path and the query unsorted; that only matches what
the SDKs sign for the common ``/`` path and already-sorted queries, so we follow the SDKs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar
from urllib.parse import unquote_to_bytes

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers._action_params import query_actions
from keybroker.signers._read_actions import is_read_action
from keybroker.signers._volcengine_endpoints import default_host
from keybroker.signers.base import BodyPolicy, Operation, ParsedAuth, SignerBase, SigningRequest
from keybroker.signers.common import (
    LOWER_HEX64,
    V4_FIELDS,
    claimed_sha256,
    compact_time,
    host_without_default_port,
    parse_signed_headers,
    parse_utc,
    pin_host,
    require_equal,
    require_signed_headers,
    split_authorization,
    split_v4_scope,
    state_of,
    swap_token_header,
)
from keybroker.signers.encoding import decode_query, encode_unreserved, segment_encoded_uri
from keybroker.signers.hmac_keys import KeyCache, prepared_hmac

__all__ = ["ALGORITHM", "SIGNER", "VolcengineSigner", "canonical_query", "canonical_uri"]

ALGORITHM = "HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_AUTH_LEN = 8192
_MAX_SIGNED_HEADERS = 64
_DEFAULT_EXPIRES = 900  # documented default of X-Expires, in seconds

_QUERY_AUTH_KEYS = ("X-Algorithm", "X-Credential", "X-Date", "X-Signature")

_QueryItem = tuple[str, bytes, str, bytes]

#: a query of unreserved characters only, with at most one "=" in each part: decoding and
#: re-encoding leave every name and value as it is
_PLAIN_QUERY = re.compile(
    r"[A-Za-z0-9\-_.~]*+(?:=[A-Za-z0-9\-_.~]*+)?+(?:&[A-Za-z0-9\-_.~]*+(?:=[A-Za-z0-9\-_.~]*+)?+)*+"
)


# --------------------------------------------------------------------------- canonical form


def canonical_uri(raw_path: str) -> str:
    """The canonical path: decoded, then each ``/``-separated segment re-encoded."""
    return segment_encoded_uri(raw_path)


def _query_items(raw_query: str) -> list[_QueryItem]:
    """``(name, name_bytes, value, value_bytes)`` for each pair (decoded at the byte level)."""
    return [
        (nb.decode("utf-8", "replace"), nb, vb.decode("utf-8", "replace"), vb)
        for nb, vb in decode_query(raw_query)
    ]


def canonical_query(raw_query: str, keep: frozenset[str] | None = None) -> str:
    """The canonical query string of ``raw_query``; with ``keep``, only those names."""
    return _canonical_query(raw_query, keep)


@functools.lru_cache(maxsize=512)
def _canonical_query(raw_query: str, keep: frozenset[str] | None) -> str:
    # cached: verify and re-sign of a header-signed request build it for the same query
    if _PLAIN_QUERY.fullmatch(raw_query):
        # every name and value is its own decoding and encoding
        pairs = [_split(part) for part in raw_query.split("&") if part]
        pairs = [p for p in pairs if keep is None or p[0] in keep]
    else:
        pairs = _encoded_pairs(raw_query, keep)
    # A stable sort on the encoded name: equal names keep their request order.
    pairs.sort(key=lambda p: p[0])
    return "&".join(f"{k}={v}" for k, v in pairs)


def _split(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name, value


def _encoded_pairs(raw_query: str, keep: frozenset[str] | None) -> list[tuple[str, str]]:
    return [
        (encode_unreserved(nb), encode_unreserved(vb))
        for name, nb, _, vb in _query_items(raw_query)
        if keep is None or name in keep
    ]


def _canonical_headers(req: SigningRequest, names: tuple[str, ...]) -> str:
    if not names:
        # Both SDKs put a lone newline here when a presigned URL signs no header.
        return "\n"
    lines = []
    for name in names:
        value = host_without_default_port(req.host) if name == "host" else req.headers.get(name, "")
        lines.append(f"{name}:{value.strip()}\n")
    return "".join(lines)


def _canonical_request(
    req: SigningRequest, query: str, headers: tuple[str, ...], payload_hash: str
) -> str:
    return "\n".join(
        [
            req.method.upper(),
            canonical_uri(req.path),
            query,
            _canonical_headers(req, headers),
            ";".join(headers),
            payload_hash,
        ]
    )


# --------------------------------------------------------------------------- signing keys


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: bytes, date: str, region: str, service: str) -> bytes:
    """``kSecret -> kDate -> kRegion -> kService -> kSigning`` (HMAC-SHA256 chain)."""
    return _hmac(_hmac(_hmac(_hmac(secret, date), region), service), "request")


def _string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{ALGORITHM}\n{x_date}\n{scope}\n{digest}"


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Scope:
    access_key: str
    date: str
    region: str
    service: str

    def text(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/request"


@dataclass(frozen=True, slots=True)
class _State:
    """What ``parse`` found, carried to ``verify``/``resign``.  Never printed whole."""

    scope: _Scope
    x_date: str
    signed_headers: tuple[str, ...]
    signature: str
    signed_queries: frozenset[str] | None = None  # query form only
    sign_body: bool = True

    def __repr__(self) -> str:
        return f"_State(scope={self.scope.text()!r}, signed_headers={self.signed_headers!r})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Volcengine signature: {message}")


def _parse_scope(credential: str) -> _Scope:
    return _Scope(*split_v4_scope(credential, "request", _bad))


def _parse_x_date(value: str | None, scope: _Scope) -> datetime:
    if value is None:
        raise _bad("X-Date is missing")
    when = parse_utc(value, "X-Date", _bad)
    if value[:8] != scope.date:
        raise _bad("X-Date and the Credential date differ")
    return when


def _parse_signed_headers(value: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    return parse_signed_headers(value, _bad, limit=_MAX_SIGNED_HEADERS, allow_empty=allow_empty)


def _single_query_value(items: list[_QueryItem], name: str) -> str | None:
    values = [value for key, _, value, _ in items if key == name]
    if len(values) > 1:
        raise _bad(f"query parameter {name!r} appears more than once")
    return values[0] if values else None


# --------------------------------------------------------------------------- the signer


class VolcengineSigner(SignerBase):
    """Volcengine ``HMAC-SHA256`` (header and presigned-query forms)."""

    vendor: ClassVar[str] = "volcengine"
    access_key_prefix: ClassVar[str] = "AKLT"
    accepts_body_sha256: ClassVar[bool] = True  # large bodies may be spooled
    public_domains: ClassVar[tuple[str, ...]] = (
        ".volcengineapi.com",
        ".volcengine-api.com",
        ".volces.com",
    )
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._keys = KeyCache(derive_signing_key)

    def __repr__(self) -> str:
        return "VolcengineSigner()"

    # detect / parse ------------------------------------------------------------------

    def detect(self, req: SigningRequest) -> bool:
        """True for an ``HMAC-SHA256 `` Authorization or an ``X-Algorithm=HMAC-SHA256`` query."""
        if req.headers.get("Authorization", "").startswith(ALGORITHM + " "):
            return True
        return "X-Signature=" in req.query and f"X-Algorithm={ALGORITHM}" in req.query

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the signature.  Raises ``MalformedSignature`` naming the faulty field."""
        items = _query_items(req.query)
        action = _single_query_value(items, "Action")
        if "Authorization" in req.headers:
            auth = self._parse_header_form(req)
        elif any(name in _QUERY_AUTH_KEYS for name, *_ in items):
            auth = self._parse_query_form(req, items)
        else:
            raise _bad("no Authorization header and no X-Signature query parameter")
        return replace(auth, action=action)

    def _parse_header_form(self, req: SigningRequest) -> ParsedAuth:
        values = req.headers.getall("Authorization")
        if len(values) != 1:
            raise _bad("Authorization appears more than once")
        fields = split_authorization(values[0], ALGORITHM, V4_FIELDS, _bad, limit=_MAX_AUTH_LEN)
        scope = _parse_scope(fields["Credential"])
        headers = _parse_signed_headers(fields["SignedHeaders"])
        if not LOWER_HEX64.fullmatch(fields["Signature"]):
            raise _bad("Signature must be 64 lower-case hex digits")
        if len(req.headers.getall("X-Date", [])) > 1:
            raise _bad("X-Date appears more than once")
        signed_at = _parse_x_date(req.headers.get("X-Date"), scope)
        require_signed_headers(req, headers, _bad)
        body, claimed = claimed_sha256(req, "X-Content-Sha256")
        state = _State(scope, req.headers["X-Date"], headers, fields["Signature"])
        return ParsedAuth(
            access_key=scope.access_key,
            signed_at=signed_at,
            region=scope.region,
            service=scope.service,
            body=body,
            payload_sha256=claimed,
            state=state,
            signature=bytes.fromhex(state.signature),
        )

    def _parse_query_form(
        self, req: SigningRequest, items: list[tuple[str, bytes, str, bytes]]
    ) -> ParsedAuth:
        counts = Counter(name for name, *_ in items)
        if any(n > 1 for n in counts.values()):
            raise _bad("a presigned query must not repeat a parameter name")
        get = {name: value for name, _, value, _ in items}
        for name in (*_QUERY_AUTH_KEYS, "X-SignedQueries"):
            if get.get(name) is None:
                raise _bad(f"query parameter {name} is missing")
        if get["X-Algorithm"] != ALGORITHM:
            raise _bad(f"X-Algorithm must be {ALGORITHM}")
        scope = _parse_scope(str(get["X-Credential"]))
        signature = str(get["X-Signature"])
        if not LOWER_HEX64.fullmatch(signature):
            raise _bad("X-Signature must be 64 lower-case hex digits")
        signed_at = _parse_x_date(get["X-Date"], scope)
        headers = _parse_signed_headers(get.get("X-SignedHeaders") or "", allow_empty=True)
        require_signed_headers(req, headers, _bad)
        expires = self._expires(get.get("X-Expires"))
        signed_queries = self._signed_queries(str(get["X-SignedQueries"]), set(get))
        sign_body = "X-NotSignBody" not in signed_queries
        state = _State(
            scope, str(get["X-Date"]), headers, signature, frozenset(signed_queries), sign_body
        )
        return ParsedAuth(
            access_key=scope.access_key,
            signed_at=signed_at,
            region=scope.region,
            service=scope.service,
            body=BodyPolicy.BUFFER if sign_body else BodyPolicy.UNSIGNED,
            in_query=True,
            expires=expires,
            state=state,
            signature=bytes.fromhex(signature),
        )

    @staticmethod
    def _signed_queries(value: str, present: set[str]) -> set[str]:
        signed = set(value.split(";")) if value else set()
        for required in ("X-Algorithm", "X-Credential", "X-Date", "X-SignedQueries"):
            if required not in signed:
                raise _bad(f"X-SignedQueries must list {required}")
        if not signed <= present:
            raise _bad("X-SignedQueries lists a parameter the query does not have")
        # Anything else in the query would reach the upstream without being signed.
        unsigned = present - signed - {"X-Signature", "X-Security-Token"}
        if unsigned:
            raise _bad("the query has parameters not covered by X-SignedQueries")
        return signed

    @staticmethod
    def _expires(value: str | None) -> int:
        if value is None:
            return _DEFAULT_EXPIRES
        if not re.fullmatch(r"[0-9]{1,9}", value):
            raise _bad("X-Expires must be a number of seconds")
        return int(value)

    # verify ---------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque)."""
        state = self._state(auth)
        require_equal(cred.access_key, state.scope.access_key)
        require_equal(self._signature(req, auth, state, cred, body), state.signature)

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "VolcengineSigner")

    def _payload_hash(self, auth: ParsedAuth, state: _State, body: bytes | None) -> str:
        if not state.sign_body:
            return EMPTY_SHA256
        if auth.body is BodyPolicy.CLAIMED_SHA256 and auth.payload_sha256:
            return auth.payload_sha256
        return auth.body_digest(body)

    def canonical_request(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> str:
        """The canonical request ``verify`` would sign (for diagnostics and test vectors)."""
        return self._canonical(req, auth, self._state(auth), body)

    def _canonical(
        self, req: SigningRequest, auth: ParsedAuth, state: _State, body: bytes | None
    ) -> str:
        query = canonical_query(req.query, state.signed_queries)
        payload = self._payload_hash(auth, state, body)
        return _canonical_request(req, query, state.signed_headers, payload)

    def _signature(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: _State,
        cred: Credential,
        body: bytes | None,
    ) -> str:
        canonical = self._canonical(req, auth, state, body)
        to_sign = _string_to_sign(state.x_date, state.scope.text(), canonical)
        scope = state.scope
        secret = cred.secret_key.reveal_bytes()
        key = self._keys.get(secret, scope.date, scope.region, scope.service)
        return prepared_hmac(key).hexdigest(to_sign.encode("utf-8"))

    # resign ---------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` in place for ``cred`` at ``now`` (same region, service, headers).

        Raises ``MalformedSignature`` when a signed header is no longer in ``req``.
        """
        state = self._state(auth)
        x_date = compact_time(now)
        scope = _Scope(cred.access_key, x_date[:8], state.scope.region, state.scope.service)
        if state.signed_queries is None:
            self._resign_header(req, auth, state, cred, body, scope, x_date)
        else:
            self._resign_query(req, auth, state, cred, body, scope, x_date)

    def _resign_header(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: _State,
        cred: Credential,
        body: bytes | None,
        scope: _Scope,
        x_date: str,
    ) -> None:
        names = set(state.signed_headers)
        # The SDKs sign every X- header, the session token included.
        swap_token_header(req, "X-Security-Token", cred.access_token, names)
        req.headers["X-Date"] = x_date
        pin_host(req)
        headers = tuple(sorted(names))
        require_signed_headers(req, headers, _bad)
        new_state = _State(
            scope, x_date, headers, state.signature, state.signed_queries, state.sign_body
        )
        signature = self._signature(req, auth, new_state, cred, body)
        req.headers["Authorization"] = (
            f"{ALGORITHM} Credential={scope.access_key}/{scope.text()}, "
            f"SignedHeaders={';'.join(headers)}, Signature={signature}"
        )

    def _resign_query(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: _State,
        cred: Credential,
        body: bytes | None,
        scope: _Scope,
        x_date: str,
    ) -> None:
        require_signed_headers(req, state.signed_headers, _bad)
        fresh = {
            "X-Date": x_date,
            "X-Credential": f"{scope.access_key}/{scope.text()}",
            "X-Algorithm": ALGORITHM,
        }
        drop = {"X-Signature", "X-Security-Token", "X-SignedQueries", *fresh}
        kept = [part for part in req.query.split("&") if part and _name(part) not in drop]
        signed = frozenset({_name(part) for part in kept} | {*fresh, "X-SignedQueries"})
        fresh["X-SignedQueries"] = ";".join(sorted(signed))
        kept += [f"{k}={encode_unreserved(v.encode())}" for k, v in fresh.items()]
        req.query = "&".join(kept)
        new_state = replace(state, scope=scope, x_date=x_date, signed_queries=signed)
        signature = self._signature(req, auth, new_state, cred, body)
        extra = [("X-Signature", signature)]
        if cred.access_token:
            # Added after signing, outside X-SignedQueries, as the Python SDK does.
            extra.append(("X-Security-Token", cred.access_token.reveal()))
        req.query += "".join(f"&{k}={encode_unreserved(v.encode())}" for k, v in extra)

    # upstream -------------------------------------------------------------------------

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """The OpenAPI reads ``Action`` from the query; any other spelling of it in the query
        (``action=``) or in a form body naming another value is refused (400), and a form body
        the proxy streams without reading leaves the request unclassified."""
        actions = query_actions(req, body, form_only=True)
        action = next(iter(actions)) if actions else None
        if action is not None and action != auth.action:
            action = None  # named elsewhere than the query's Action=: not what the gateway reads
        read = is_read_action(action) and req.method.upper() in ("GET", "HEAD", "POST")
        return Operation(auth.service, action, None, read)

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """The SDK's default endpoint for the signed service and region.

        Outside a handful of "bootstrap" regions every service is served by
        ``open.volcengineapi.com``; inside them, known services have their own host.
        """
        service, region = auth.service, auth.region
        if not service or not region:
            return None
        return f"https://{default_host(service, region)}"


def _name(part: str) -> str:
    name = part.partition("=")[0]
    return unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace")


SIGNER = VolcengineSigner()
