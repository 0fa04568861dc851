"""Which account a request is for, and where it may go.

Two ways to address the proxy share one port: *key-proxy mode* (``X-Mcdn-*`` headers; the
platform signed for the origin URI) and *native mode* (an unmodified SDK; the account is found
from the proxy access key in the signature).  The router knows nothing vendor-specific: it asks
the registered signers.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from multidict import CIMultiDict

from keybroker import signers
from keybroker.context import RequestContext
from keybroker.errors import (
    AccountNotFound,
    MalformedRequest,
    MalformedSignature,
    PayloadTooLarge,
    ProxyError,
    SignatureMismatch,
)
from keybroker.http.messages import Request
from keybroker.proxy.bodyprobe import DETECT_BYTES, prefix_access_keys, read_prefix
from keybroker.proxy.destinations import Destination, parse_base_url, parse_origin_uri
from keybroker.proxy.forwarding import HOP_BY_HOP, read_bounded
from keybroker.proxy.hostscope import HostScope
from keybroker.proxy.pathscope import join_under_prefix
from keybroker.secret import constant_time_equal
from keybroker.settings import Config, Endpoint
from keybroker.signers import ParsedAuth, Signer, SigningRequest

__all__ = [
    "CONTROL_HEADERS",
    "Accounts",
    "Route",
    "Router",
    "account_scope",
    "parse_auth",
    "public_request",
    "upstream_request",
    "vendor_scope",
]

log = logging.getLogger("keybroker.proxy")

CONTROL_HEADERS = frozenset(
    {
        "x-mcdn-origin-uri",
        "x-mcdn-cloud-account-name",
        "x-mcdn-kept-headers",
        "x-origin-host",
        "x-mcdn-vendor-name",
        "x-mcdn-cloud-account-id",
        "x-mcdn-top-account-id",
        "x-mcdn-request-id",
        "x-mcdn-cloud-account-subproject",
    }
)


class Accounts:
    """The accounts of one config, indexed for lookups by name and by proxy access key."""

    def __init__(self, config: Config) -> None:
        self.by_name: dict[str, Endpoint] = {e.cloud_account_name: e for e in config.endpoints}
        self.by_proxy_key: dict[str, Endpoint] = {
            signers.get(e.vendor).credential_id(cred): e
            for e in config.endpoints
            for cred in (e.proxy, *e.additional_proxies)
        }
        self.upstreams: dict[str, Destination] = {
            e.cloud_account_name: parse_base_url(e.upstream) for e in config.endpoints if e.upstream
        }

    def upstream_hosts(self) -> set[str]:
        """Host names the operator configured explicitly (trusted even if not public)."""
        return {d.hostname for d in self.upstreams.values()}


class Router:
    """Finds the account, signer and parsed signature of a request, for one config."""

    def __init__(self, config: Config) -> None:
        self.accounts = Accounts(config)
        self.forbid_unknown_account = config.forbidden.forbidden_account_not_found
        self.max_body_bytes = config.http.max_body_bytes
        self.client_timeout = config.http.client_timeout

    async def keyproxy(self, request: Request) -> Route:
        origin = request.headers.get("x-mcdn-origin-uri", "")
        if not origin:
            raise MalformedRequest("missing X-Mcdn-Origin-Uri header")
        dest, path, query = parse_origin_uri(origin)
        wanted = _forwarded(request.headers.get("x-mcdn-kept-headers", ""))
        headers: CIMultiDict[str] = CIMultiDict(
            [(name, value) for name, value in request.headers.items() if name.lower() in wanted]
        )
        headers.popall("host", None)
        signed = SigningRequest(request.method, dest.host, path, query, headers, dest.scheme)
        name = request.headers.get("x-mcdn-cloud-account-name", "")
        endpoint = self.accounts.by_name.get(name)
        if endpoint is None:
            if self.forbid_unknown_account:
                raise AccountNotFound(f"cloud account {name!r} is not configured")
            return Route(None, None, None, signed, dest, vendor_hint=vendor_hint(request))
        signer = signers.get(endpoint.vendor)
        if signer.body_credentials and request.body_exists:
            signed.body, complete = await read_prefix(request, DETECT_BYTES, self.client_timeout)
            if not complete:
                _require_own_key(signer, endpoint, prefix_access_keys(signer, signed))
                await self._read_rest(request, signed, self._limit(endpoint, None))
        auth = parse_auth(signer, signed)
        return Route(endpoint, signer, auth, signed, dest)

    async def native(
        self, request: Request, ctx: RequestContext, max_body: int | None = None
    ) -> Route:
        """The route of a natively addressed request.  ``max_body``: a tighter bound than
        the account's for a body read here (a service route's own limit)."""
        path, _, query = request.raw_path.partition("?")
        headers: CIMultiDict[str] = CIMultiDict(
            [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        )
        host = request.headers.get("host", "")
        scheme = "https" if request.secure else "http"
        signed = SigningRequest(request.method, host, path or "/", query, headers, scheme)
        candidate, complete = await self._detect(request, signed, max_body)
        ctx.vendor = candidate.vendor  # errors from here on in this vendor's shape
        if not complete:  # a long body: read on only for an account its first bytes name
            found = self._account_named(candidate, prefix_access_keys(candidate, signed))
            await self._read_rest(request, signed, self._limit(found, max_body))
        auth = parse_auth(candidate, signed)
        ctx.service = auth.service
        endpoint = self.accounts.by_proxy_key.get(auth.access_key)
        if endpoint is None:
            raise AccountNotFound("no cloud account has this proxy access key")
        signer = signers.get(endpoint.vendor)
        if signer is not candidate:
            auth = parse_auth(signer, signed)
        return Route(endpoint, signer, auth, signed, None)

    async def _detect(
        self, request: Request, signed: SigningRequest, max_body: int | None
    ) -> tuple[Signer, bool]:
        """The scheme of a natively addressed request, and whether ``signed.body`` holds all
        of the body: header/query schemes first; schemes that carry the credential in the
        body only if none of those matched, on at most the body's first ``DETECT_BYTES``."""
        in_body = []
        for candidate in signers.all_signers():
            if candidate.body_credentials:
                in_body.append(candidate)
            elif candidate.detect(signed):
                return candidate, True
        complete = True
        if in_body and request.body_exists:
            bound = DETECT_BYTES if max_body is None else min(DETECT_BYTES, max_body)
            signed.body, complete = await read_prefix(request, bound, self.client_timeout)
            if not complete and bound < DETECT_BYTES:
                raise PayloadTooLarge(f"request body exceeds {bound} bytes")
        for candidate in in_body:
            if candidate.detect(signed):
                return candidate, complete
        raise SignatureMismatch("the request carries no signature of a supported scheme")

    def _account_named(self, signer: Signer, keys: set[str]) -> Endpoint:
        """The account of ``signer``'s scheme one of ``keys`` names.  Raises
        ``MalformedSignature`` (no credential found) or ``AccountNotFound``."""
        if not keys:
            raise MalformedSignature(
                f"the credential must be in the headers, the query or the first {DETECT_BYTES}"
                " bytes of the body"
            )
        for key in sorted(keys):
            endpoint = self.accounts.by_proxy_key.get(key)
            if endpoint is not None and endpoint.vendor == signer.vendor:
                return endpoint
        raise AccountNotFound("no cloud account has this proxy access key")

    def _limit(self, endpoint: Endpoint | None, max_body: int | None) -> int:
        limit = (endpoint.max_body_bytes if endpoint else 0) or self.max_body_bytes
        return limit if max_body is None else min(limit, max_body)

    async def _read_rest(self, request: Request, signed: SigningRequest, limit: int) -> None:
        """The rest of a body whose first bytes are in ``signed.body``: all of it, at most
        ``limit`` bytes in all (``PayloadTooLarge``), under ``Http.ClientTimeout``."""
        prefix = signed.body or b""
        if len(prefix) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        rest = await read_bounded(request, limit - len(prefix), self.client_timeout, len(prefix))
        signed.body = prefix + rest


@dataclass(slots=True)
class Route:
    endpoint: Endpoint | None
    signer: Signer | None
    auth: ParsedAuth | None
    signed: SigningRequest
    dest: Destination | None  # key-proxy mode: the origin URI's destination
    vendor_hint: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint is not None and self.signer is None:
            raise ValueError("a routed endpoint needs a signer")


def _require_own_key(signer: Signer, endpoint: Endpoint, keys: set[str]) -> None:
    """Key-proxy mode, a long body: its first bytes must name one of the account's own proxy
    credentials (compared in constant time) before the rest is read."""
    if not keys:
        raise MalformedSignature(
            f"the credential must be in the headers, the query or the first {DETECT_BYTES}"
            " bytes of the body"
        )
    ids = [signer.credential_id(c) for c in (endpoint.proxy, *endpoint.additional_proxies)]
    matched = False
    for key in keys:
        for ident in ids:
            matched |= constant_time_equal(key, ident)
    if not matched:
        raise SignatureMismatch()


def parse_auth(signer: Signer, req: SigningRequest) -> ParsedAuth:
    try:
        return signer.parse(req)
    except ProxyError:
        raise
    except Exception as exc:  # a signer must only raise MalformedSignature; be safe anyway
        log.warning("signer %s failed to parse: %s", signer.vendor, type(exc).__name__)
        raise MalformedSignature("the signature cannot be parsed") from None


def vendor_hint(request: Request) -> str | None:
    hint = request.headers.get("x-mcdn-vendor-name", "").strip().lower()
    return hint or None


def vendor_scope(hint: str | None) -> HostScope:
    """Where an unknown account's request may go: the public API hosts of the vendor the
    platform named, or of any known vendor."""
    chosen = [s for s in signers.all_signers() if hint is None or s.vendor == hint]
    return HostScope(
        hint or "cloud vendor",
        tuple(d for s in chosen for d in s.public_domains),
        tuple(p for s in chosen for p in s.excluded_hosts),
    )


def upstream_request(route: Route, accounts: Accounts) -> SigningRequest:
    """The request as it will be sent: the endpoint's ``Upstream`` wins, else the origin URI
    (key-proxy mode, vendor hosts only) or the vendor's public endpoint (native mode).  The
    path stays under the ``Upstream``'s path prefix (``Forbidden`` otherwise)."""
    endpoint = route.endpoint
    if endpoint is None:
        raise ValueError("upstream_request needs a routed account")
    override = accounts.upstreams.get(endpoint.cloud_account_name)
    if override is None:
        return public_request(route, account_scope(route))
    up = route.signed.copy()
    up.scheme, up.host = override.scheme, override.host
    up.path = join_under_prefix(override.prefix, up.path)
    return up


def public_request(route: Route, scope: HostScope | None = None) -> SigningRequest:
    """The request addressed to the vendor's public API, never the account's ``Upstream``:
    the origin URI (key-proxy mode) or the vendor endpoint for the signature (native mode),
    refused (``Forbidden``) unless ``scope`` (the vendor's own API hosts by default) allows
    it.  An unverified request is passed on only this way."""
    endpoint, signer, auth = route.endpoint, route.signer, route.auth
    if endpoint is None or signer is None or auth is None:
        raise ValueError("public_request needs a routed account")
    if scope is None:
        scope = HostScope(endpoint.vendor, signer.public_domains, signer.excluded_hosts)
    if route.dest is not None:
        dest = route.dest
    else:
        base = signer.native_upstream(route.signed, auth)
        if base is None:
            raise MalformedRequest(
                "no public endpoint is known for this service; set Upstream for the account"
            )
        # the base is built from what the client signed (a Host, a credential scope's
        # service or region): anything but a bare https://host is the client's malformed input
        try:
            dest = parse_base_url(base)
        except ValueError:
            raise MalformedRequest("the signed host is not a valid host name") from None
        if dest.prefix:
            raise MalformedRequest("the signed host is not a valid host name")
    scope.require(dest)
    up = route.signed.copy()
    up.scheme, up.host = dest.scheme, dest.host
    up.path = join_under_prefix(dest.prefix, up.path)
    return up


def account_scope(route: Route) -> HostScope:
    """The vendor's public API hosts (less its customer-controlled hosts) plus the account's
    ``AllowedHosts`` (a name without a leading dot allows that host and its subdomains)."""
    endpoint, signer = route.endpoint, route.signer
    if endpoint is None or signer is None:
        raise ValueError("account_scope needs a routed account")
    extra: list[str] = []
    for host in endpoint.allowed_hosts:
        name = host.strip().lower().rstrip(".")
        extra.append(name if name.startswith(".") else f".{name}")
        if not name.startswith("."):
            extra.append(f"={name}")
    return HostScope(endpoint.vendor, signer.public_domains, signer.excluded_hosts, tuple(extra))


def kept_headers(value: str) -> frozenset[str]:
    # key-proxy splits on "," without trimming; we also accept spaces around names.
    return frozenset(p.strip().lower() for p in value.split(",") if p.strip())


@functools.lru_cache(maxsize=128)
def _forwarded(kept: str) -> frozenset[str]:
    """The lower-case names a key-proxy request's headers are copied under: those its
    ``X-Mcdn-Kept-Headers`` value ``kept`` names, less control and hop-by-hop headers.
    Cached: a platform sends a handful of distinct values."""
    return kept_headers(kept) - CONTROL_HEADERS - HOP_BY_HOP
