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

import hashlib
import hmac
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote, unquote_to_bytes

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest

__all__ = ["ALGORITHM", "SIGNER", "VolcengineSigner", "canonical_query", "canonical_uri"]

ALGORITHM = "HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_MAX_AUTH_LEN = 8192
_MAX_SIGNED_HEADERS = 64
_DEFAULT_EXPIRES = 900  # documented default of X-Expires, in seconds

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_X_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SCOPE_PART = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ACCESS_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~\-]{1,128}")
_QUERY_AUTH_KEYS = ("X-Algorithm", "X-Credential", "X-Date", "X-Signature")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Universal endpoint used for every service outside the SDK's "bootstrap" regions.
UNIVERSAL_HOST = "open.volcengineapi.com"
#: Regions where the SDK addresses each service on its own host (DefaultEndpointProvider).
_BOOTSTRAP_REGIONS = frozenset(
    {"ap-southeast-2", "ap-southeast-3", "cn-beijing-autodriving", "cn-beijing-selfdrive",
     "cn-shanghai-autodriving"}
)  # fmt: skip
#: Services the SDK knows as global (``<service>.volcengineapi.com``).
_GLOBAL_SERVICES = _words(
    "advdefence billing cdn cen certificate_service cloud_detect config cpaas cv dns dramart "
    "edx fw_center ga gtm httpdns i18n_openapi iam insight livesaas mcdn na nta organization "
    "partner pca private_zone quota resourcecenter seccenter smc spark tag tis translate "
    "veenedge vei_api volcsms waf"
)
#: Services the SDK knows as regional (``<service>.<region>.volcengineapi.com``).
_REGIONAL_SERVICES = _words(
    "acep aidap alb apig ark arkclaw auto_scaling bio cbr cfs clawsentry clb cloud_trail "
    "cloudcontrol cloudidentity cloudmonitor cr dataleap directconnect dms ecs efs emr "
    "escloud fasttrack filenas flink id inframanager kafka kms mcs milvus ml_platform mongodb "
    "natgateway origin_defence privatelink rabbitmq rds_mssql rds_mysql rds_postgresql redis "
    "rocketmq sqs storage_ebs sts tidb transitrouter vedbm vefaas vepfs vikingdb vke vmp vod "
    "volc_observe vpc vpn"
)


# --------------------------------------------------------------------------- canonical form


def _encode(raw: bytes) -> str:
    # quote() keeps only the RFC 3986 unreserved set (letters, digits, "-_.~") when safe="".
    return quote(raw, safe="")


def canonical_uri(raw_path: str) -> str:
    """The canonical path: decoded, then each ``/``-separated segment re-encoded."""
    if not raw_path:
        return "/"
    return "/".join(_encode(unquote_to_bytes(seg)) for seg in raw_path.split("/"))


def _query_items(raw_query: str) -> list[tuple[str, bytes, str, bytes]]:
    """``(name, name_bytes, value, value_bytes)`` for each pair; decoded at the byte level so
    two different wire queries never share a canonical form (no U+FFFD folding)."""
    items = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        nb = unquote_to_bytes(name.replace("+", " "))
        vb = unquote_to_bytes(value.replace("+", " "))
        items.append((nb.decode("utf-8", "replace"), nb, vb.decode("utf-8", "replace"), vb))
    return items


def canonical_query(raw_query: str, keep: frozenset[str] | None = None) -> str:
    """The canonical query string of ``raw_query``; with ``keep``, only those names."""
    pairs = [
        (_encode(nb), _encode(vb))
        for name, nb, _, vb in _query_items(raw_query)
        if keep is None or name in keep
    ]
    # A stable sort on the encoded name: equal names keep their request order.
    pairs.sort(key=lambda p: p[0])
    return "&".join(f"{k}={v}" for k, v in pairs)


def _host_value(host: str) -> str:
    # The SDKs drop a default port from the signed Host value, whatever the scheme.
    name, sep, port = host.rpartition(":")
    if sep and port in ("80", "443"):
        return name
    return host


def _canonical_headers(req: SigningRequest, names: tuple[str, ...]) -> str:
    if not names:
        # Both SDKs put a lone newline here when a presigned URL signs no header.
        return "\n"
    lines = []
    for name in names:
        value = _host_value(req.host) if name == "host" else req.headers.get(name, "")
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


class _KeyCache:
    """Bounded LRU of derived signing keys; holds no secret in any repr."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._keys: OrderedDict[tuple[bytes, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_KeyCache(size={self._size})"

    def get(self, secret: bytes, date: str, region: str, service: str) -> bytes:
        ident = (hashlib.sha256(secret).digest(), date, region, service)
        with self._lock:
            key = self._keys.get(ident)
            if key is not None:
                self._keys.move_to_end(ident)
                return key
        key = derive_signing_key(secret, date, region, service)
        with self._lock:
            self._keys[ident] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key


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
    parts = credential.split("/")
    if len(parts) != 5:
        raise _bad(
            "Credential must be access-key/date/region/service/request "
            f"(5 parts separated by '/'), got {len(parts)} part(s)"
        )
    ak, date, region, service, terminal = parts
    if not _ACCESS_KEY.fullmatch(ak):
        raise _bad("Credential access key is empty or has invalid characters")
    if not re.fullmatch(r"[0-9]{8}", date):
        raise _bad("Credential date must be YYYYMMDD")
    if not _SCOPE_PART.fullmatch(region) or not _SCOPE_PART.fullmatch(service):
        raise _bad("Credential region and service must be 1-64 characters of [A-Za-z0-9_.-]")
    if terminal != "request":
        raise _bad("Credential must end with '/request'")
    return _Scope(ak, date, region, service)


def _parse_x_date(value: str | None, scope: _Scope) -> datetime:
    if value is None:
        raise _bad("X-Date is missing")
    if not _X_DATE.fullmatch(value):
        raise _bad("X-Date must be YYYYMMDDTHHMMSSZ")
    try:
        when = datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad("X-Date is not a valid date and time") from None
    if value[:8] != scope.date:
        raise _bad("X-Date and the Credential date differ")
    return when


def _parse_signed_headers(value: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if value == "" and allow_empty:
        return ()
    names = tuple(value.split(";"))
    if len(names) > _MAX_SIGNED_HEADERS:
        raise _bad(f"SignedHeaders lists more than {_MAX_SIGNED_HEADERS} headers")
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            raise _bad("SignedHeaders must be lower-case header names separated by ';'")
    if len(set(names)) != len(names):
        raise _bad("SignedHeaders lists a header twice")
    return names


def _split_authorization(value: str) -> dict[str, str]:
    if len(value) > _MAX_AUTH_LEN:
        raise _bad(f"Authorization is longer than {_MAX_AUTH_LEN} characters")
    if not value.startswith(ALGORITHM + " "):
        raise _bad(f"Authorization must start with '{ALGORITHM} '")
    fields: dict[str, str] = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        name, eq, content = part.strip().partition("=")
        if not eq or name not in ("Credential", "SignedHeaders", "Signature"):
            raise _bad("Authorization fields must be Credential=, SignedHeaders=, Signature=")
        if name in fields:
            raise _bad(f"Authorization has {name} twice")
        fields[name] = content
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise _bad(f"Authorization lacks {', '.join(missing)}")
    return fields


def _check_signed_headers_present(req: SigningRequest, names: tuple[str, ...]) -> None:
    for name in names:
        if name == "host":
            continue
        count = len(req.headers.getall(name, []))
        if count == 0:
            raise _bad(f"signed header {name!r} is missing from the request")
        if count > 1:
            raise _bad(f"signed header {name!r} appears more than once")


def _single_query_value(items: list[tuple[str, bytes, str, bytes]], name: str) -> str | None:
    values = [value for key, _, value, _ in items if key == name]
    if len(values) > 1:
        raise _bad(f"query parameter {name!r} appears more than once")
    return values[0] if values else None


def _body_policy(req: SigningRequest) -> tuple[BodyPolicy, str | None]:
    claimed = req.headers.getall("X-Content-Sha256", [])
    if len(claimed) == 1 and _HEX64.fullmatch(claimed[0].strip()):
        return BodyPolicy.CLAIMED_SHA256, claimed[0].strip().lower()
    return BodyPolicy.BUFFER, None


# --------------------------------------------------------------------------- the signer


class VolcengineSigner:
    """Volcengine ``HMAC-SHA256`` (header and presigned-query forms)."""

    vendor: ClassVar[str] = "volcengine"
    public_domains: ClassVar[tuple[str, ...]] = (
        ".volcengineapi.com",
        ".volcengine-api.com",
        ".volces.com",
    )

    def __init__(self) -> None:
        self._keys = _KeyCache()

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
        auth.action = action
        return auth

    def _parse_header_form(self, req: SigningRequest) -> ParsedAuth:
        values = req.headers.getall("Authorization")
        if len(values) != 1:
            raise _bad("Authorization appears more than once")
        fields = _split_authorization(values[0])
        scope = _parse_scope(fields["Credential"])
        headers = _parse_signed_headers(fields["SignedHeaders"])
        if not _SIGNATURE.fullmatch(fields["Signature"]):
            raise _bad("Signature must be 64 lower-case hex digits")
        if len(req.headers.getall("X-Date", [])) > 1:
            raise _bad("X-Date appears more than once")
        signed_at = _parse_x_date(req.headers.get("X-Date"), scope)
        _check_signed_headers_present(req, headers)
        body, claimed = _body_policy(req)
        state = _State(scope, req.headers["X-Date"], headers, fields["Signature"])
        return ParsedAuth(
            access_key=scope.access_key,
            signed_at=signed_at,
            region=scope.region,
            service=scope.service,
            body=body,
            payload_sha256=claimed,
            state=state,
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
        if not _SIGNATURE.fullmatch(signature):
            raise _bad("X-Signature must be 64 lower-case hex digits")
        signed_at = _parse_x_date(get["X-Date"], scope)
        headers = _parse_signed_headers(get.get("X-SignedHeaders") or "", allow_empty=True)
        _check_signed_headers_present(req, headers)
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
        if not hmac.compare_digest(cred.access_key.encode(), state.scope.access_key.encode()):
            raise SignatureMismatch()
        expected = self._signature(req, auth, state, cred, body)
        if not hmac.compare_digest(expected.encode(), state.signature.encode()):
            raise SignatureMismatch()

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        if not isinstance(auth.state, _State):
            raise TypeError("ParsedAuth was not produced by VolcengineSigner.parse")
        return auth.state

    def _payload_hash(self, auth: ParsedAuth, state: _State, body: bytes | None) -> str:
        if not state.sign_body:
            return EMPTY_SHA256
        if auth.body is BodyPolicy.CLAIMED_SHA256 and auth.payload_sha256:
            return auth.payload_sha256
        return hashlib.sha256(body or b"").hexdigest()

    def canonical_request(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> str:
        """The canonical request ``verify`` would sign (for diagnostics and test vectors)."""
        state = self._state(auth)
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
        canonical = self.canonical_request(req, replace(auth, state=state), body)
        to_sign = _string_to_sign(state.x_date, state.scope.text(), canonical)
        scope = state.scope
        key = self._keys.get(cred.secret_key.reveal_bytes(), scope.date, scope.region,
                             scope.service)  # fmt: skip
        return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

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
        x_date = now.astimezone(UTC).strftime(_DATE_FORMAT)
        scope = replace(state.scope, access_key=cred.access_key, date=x_date[:8])
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
        req.headers.popall("X-Security-Token", None)
        names.discard("x-security-token")
        if cred.access_token:
            # The SDKs sign every X- header, the session token included.
            req.headers["X-Security-Token"] = cred.access_token.reveal()
            names.add("x-security-token")
        req.headers["X-Date"] = x_date
        if "Host" in req.headers:
            # A copied client Host header would contradict the host we sign for.
            req.headers["Host"] = req.host
        headers = tuple(sorted(names))
        _check_signed_headers_present(req, headers)
        new_state = replace(state, scope=scope, x_date=x_date, signed_headers=headers)
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
        _check_signed_headers_present(req, state.signed_headers)
        fresh = {
            "X-Date": x_date,
            "X-Credential": f"{scope.access_key}/{scope.text()}",
            "X-Algorithm": ALGORITHM,
        }
        drop = {"X-Signature", "X-Security-Token", "X-SignedQueries", *fresh}
        kept = [part for part in req.query.split("&") if part and _name(part) not in drop]
        signed = frozenset({_name(part) for part in kept} | {*fresh, "X-SignedQueries"})
        fresh["X-SignedQueries"] = ";".join(sorted(signed))
        kept += [f"{k}={_encode(v.encode())}" for k, v in fresh.items()]
        req.query = "&".join(kept)
        new_state = replace(state, scope=scope, x_date=x_date, signed_queries=signed)
        signature = self._signature(req, auth, new_state, cred, body)
        extra = [("X-Signature", signature)]
        if cred.access_token:
            # Added after signing, outside X-SignedQueries, as the Python SDK does.
            extra.append(("X-Security-Token", cred.access_token.reveal()))
        req.query += "".join(f"&{k}={_encode(v.encode())}" for k, v in extra)

    # upstream -------------------------------------------------------------------------

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """The SDK's default endpoint for the signed service and region.

        Outside a handful of "bootstrap" regions every service is served by
        ``open.volcengineapi.com``; inside them, known services have their own host.
        """
        service, region = auth.service, auth.region
        if not service or not region:
            return None
        host = UNIVERSAL_HOST
        if region in _BOOTSTRAP_REGIONS:
            label = service.lower().replace("_", "-")
            if service in _GLOBAL_SERVICES:
                host = f"{label}.volcengineapi.com"
            elif service in _REGIONAL_SERVICES:
                host = f"{label}.{region}.volcengineapi.com"
        return f"https://{host}"


def _name(part: str) -> str:
    name = part.partition("=")[0]
    return unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace")


SIGNER = VolcengineSigner()
