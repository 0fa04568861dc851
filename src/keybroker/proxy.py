"""The credential proxy: find the account, verify, re-sign, forward, stream back.

The HTTP layer stays thin and knows nothing vendor-specific: every scheme lives in a
:mod:`keybroker.signers` module.  Two ways to address the proxy share one port:

* *key-proxy mode* — the request carries ``X-Mcdn-Origin-Uri`` / ``X-Mcdn-Cloud-Account-Name``
  (volcengine key-proxy's wire contract); the platform signed for the origin URI.
* *native mode* — an unmodified SDK whose endpoint is keybroker; the account is found from
  the proxy access key in the signature, the upstream from ``Upstream`` or the vendor's rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from keybroker import __version__, native_errors, signers
from keybroker.config import Config, Endpoint
from keybroker.config_load import validate
from keybroker.context import RequestContext
from keybroker.destinations import (
    Destination,
    parse_base_url,
    parse_origin_uri,
    require_vendor_host,
)
from keybroker.errors import (
    AccountNotFound,
    HeadersTooLarge,
    MalformedRequest,
    MalformedSignature,
    ProxyError,
    RequestExpired,
    SignatureMismatch,
)
from keybroker.forwarding import HOP_BY_HOP, Forwarder, read_bounded
from keybroker.logs import request_log_line
from keybroker.redact import register_config_secrets
from keybroker.secret import constant_time_equal
from keybroker.signers import BodyPolicy, ParsedAuth, Signer, SigningRequest

__all__ = ["Hooks", "Proxy", "RequestContext"]

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

HookFn = Callable[[RequestContext], Awaitable[None] | None]


@dataclass
class Hooks:
    """Library hooks (key-proxy offers request/response hooks to library users).

    ``before_forward`` runs after verification, before re-signing; raising a ``ProxyError``
    there refuses the request.  ``after_response`` runs once the answer is sent (or failed).
    """

    before_forward: list[HookFn] = field(default_factory=list)
    after_response: list[HookFn] = field(default_factory=list)


async def _run_hooks(fns: list[HookFn], ctx: RequestContext) -> None:
    for fn in fns:
        result = fn(ctx)
        if result is not None:
            await result


class _Accounts:
    """The accounts of one config, indexed for lookups by name and by proxy access key."""

    def __init__(self, config: Config) -> None:
        self.by_name: dict[str, Endpoint] = {e.cloud_account_name: e for e in config.endpoints}
        self.by_proxy_key: dict[str, Endpoint] = {
            signers.credential_id(signers.get(e.vendor), e.proxy): e for e in config.endpoints
        }
        self.upstreams: dict[str, Destination] = {
            e.cloud_account_name: parse_base_url(e.upstream) for e in config.endpoints if e.upstream
        }


class Proxy:
    """The proxy server.  Build it from a :class:`~keybroker.config.Config` (validated here:
    ``ConfigError`` lists every problem), then ``run()``
    (blocking) or ``await start()`` / ``await stop()``.

    ``clock`` returns the current UTC time (injectable for tests).
    """

    def __init__(
        self,
        config: Config,
        *,
        hooks: Hooks | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.hooks = hooks or Hooks()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._session: aiohttp.ClientSession | None = None
        self._forwarder_: Forwarder | None = None
        self._runner: web.ServerRunner | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        validate(config)
        self.config = config
        self._accounts = _Accounts(config)
        register_config_secrets(config)
        self.ports: list[int] = []

    def reload(self, config: Config) -> None:
        """Swap in a new config; in-flight requests keep the old one.  Raises ``ConfigError``
        (and keeps the old config) if the new one is invalid."""
        validate(config)
        accounts = _Accounts(config)
        register_config_secrets(config)
        self.config, self._accounts = config, accounts

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``Http.Address`` (or ``host``/``port``); TLS when ``Http.Tls.Enabled``."""
        from keybroker.serving import make_site

        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.config.http.upstream_connect_timeout,
            sock_read=self.config.http.upstream_read_timeout,
        )
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._forwarder_ = Forwarder(
            self._session, self.config.http.max_body_bytes, self._version_headers()
        )
        server = web.Server(
            self._handle,
            max_line_size=64 * 1024,
            max_field_size=64 * 1024,
            handler_cancellation=True,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=self.config.http.shutdown_timeout)
        await self._runner.setup()
        site = make_site(self._runner, self.config.http, host, port)
        await site.start()
        self.ports = _bound_ports(site)

    async def stop(self) -> None:
        """Stop accepting, wait for in-flight requests (up to ``Http.ShutdownTimeout``), close."""
        self._draining = True
        if self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), self.config.http.shutdown_timeout)
            except TimeoutError:
                log.warning("shutdown deadline reached with %d requests in flight", self._inflight)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain in-flight requests and return."""
        from keybroker.serving import run_until_signalled

        run_until_signalled(self)

    @property
    def _forwarder(self) -> Forwarder:
        if self._forwarder_ is None:
            raise RuntimeError("the proxy is not started")
        return self._forwarder_

    # ---------------------------------------------------------------- request handling

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = RequestContext(
            request_id=_request_id(request),
            mode="native",
            method=request.method,
            remote=request.remote,
        )
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._serve(request, ctx)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
            await self._finish(ctx)

    async def _serve(self, request: web.BaseRequest, ctx: RequestContext) -> web.StreamResponse:
        try:
            health = self._health(request)
            if health is not None:
                ctx.mode = "health"
                ctx.status = health.status
                return health
            return await self._proxy(request, ctx)
        except ProxyError as exc:
            return self._error(ctx, exc, request)
        except Exception:
            log.exception("internal error", extra={"fields": {"request_id": ctx.request_id}})
            err = ProxyError("internal error; see the proxy log for this request id")
            return self._error(ctx, err, request)

    def _health(self, request: web.BaseRequest) -> web.Response | None:
        if request.method != "GET" or "authorization" in request.headers:
            return None
        if "x-mcdn-origin-uri" in request.headers or request.query_string:
            return None
        if request.path == "/ping":
            return web.Response(text="pong", headers=self._version_headers())
        if request.path == "/healthz":
            return web.json_response({"status": "ok"}, headers=self._version_headers())
        if request.path == "/readyz":
            ready = self._session is not None and not self._draining
            return web.json_response(
                {"status": "ready" if ready else "draining"},
                status=200 if ready else 503,
                headers=self._version_headers(),
            )
        return None

    async def _proxy(self, request: web.BaseRequest, ctx: RequestContext) -> web.StreamResponse:
        _check_header_size(request, self.config.http.max_header_bytes)
        accounts = self._accounts
        if "x-mcdn-origin-uri" in request.headers or "x-mcdn-cloud-account-name" in request.headers:
            ctx.mode = "keyproxy"
            route = await self._route_keyproxy(request, accounts)
        else:
            route = await self._route_native(request, accounts, ctx)
        if route.endpoint is None:
            return await self._pass_unsigned(request, ctx, route)
        endpoint, signer, auth = route.endpoint, route.signer, route.auth
        # a routed endpoint always has a signer and a parsed signature
        assert signer is not None and auth is not None
        ctx.account, ctx.vendor = endpoint.cloud_account_name, endpoint.vendor
        ctx.service, ctx.region, ctx.action = auth.service, auth.region, auth.action
        body = route.signed.body
        if body is None:
            body = await self._read_body_if_needed(request, auth)
        try:
            self._verify(route.signed, signer, auth, endpoint, body)
        except (SignatureMismatch, RequestExpired):
            if self.config.forbidden.forbidden_proxy_credential_err:
                raise
            return await self._pass_unverified(request, ctx, route, body)
        upstream = _upstream_request(route, accounts)
        ctx.upstream_url = f"{upstream.scheme}://{upstream.host}"
        await _run_hooks(self.hooks.before_forward, ctx)
        signer.resign(upstream, auth, endpoint.real, body, self.clock())
        if upstream.body is not None:  # a body-credential scheme re-signed inside the body
            body = upstream.body
        return await self._forwarder.forward(request, ctx, upstream, body, auth)

    # ------------------------------------------------------------- routing

    async def _route_keyproxy(self, request: web.BaseRequest, accounts: _Accounts) -> _Route:
        origin = request.headers.get("x-mcdn-origin-uri", "")
        if not origin:
            raise MalformedRequest("missing X-Mcdn-Origin-Uri header")
        dest, path, query = parse_origin_uri(origin)
        kept = _kept_headers(request.headers.get("x-mcdn-kept-headers", ""))
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            low = name.lower()
            if low in kept and low not in CONTROL_HEADERS and low not in HOP_BY_HOP:
                headers.add(name, value)
        headers.popall("host", None)
        signed = SigningRequest(request.method, dest.host, path, query, headers, dest.scheme)
        name = request.headers.get("x-mcdn-cloud-account-name", "")
        endpoint = accounts.by_name.get(name)
        if endpoint is None:
            if self.config.forbidden.forbidden_account_not_found:
                raise AccountNotFound(f"cloud account {name!r} is not configured")
            return _Route(None, None, None, signed, dest, vendor_hint=_vendor_hint(request))
        signer = signers.get(endpoint.vendor)
        if getattr(signer, "body_credentials", False):
            signed.body = await read_bounded(request, self.config.http.max_body_bytes)
        auth = _parse(signer, signed)
        return _Route(endpoint, signer, auth, signed, dest)

    async def _route_native(
        self, request: web.BaseRequest, accounts: _Accounts, ctx: RequestContext
    ) -> _Route:
        path, _, query = request.raw_path.partition("?")
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        host = request.headers.get("host", "")
        scheme = "https" if request.secure else "http"
        signed = SigningRequest(request.method, host, path or "/", query, headers, scheme)
        candidate = await self._detect(request, signed)
        ctx.vendor = candidate.vendor  # errors from here on in this vendor's shape
        auth = _parse(candidate, signed)
        ctx.service = auth.service
        endpoint = accounts.by_proxy_key.get(auth.access_key)
        if endpoint is None:
            raise AccountNotFound("no cloud account has this proxy access key")
        signer = signers.get(endpoint.vendor)
        if signer is not candidate:
            auth = _parse(signer, signed)
        return _Route(endpoint, signer, auth, signed, None)

    async def _detect(self, request: web.BaseRequest, signed: SigningRequest) -> Signer:
        """The scheme of a natively addressed request: header/query schemes first; schemes
        that carry the credential in the body only if none of those matched."""
        in_body = []
        for candidate in signers.all_signers():
            if getattr(candidate, "body_credentials", False):
                in_body.append(candidate)
            elif candidate.detect(signed):
                return candidate
        if in_body and request.body_exists:
            signed.body = await read_bounded(request, self.config.http.max_body_bytes)
        for candidate in in_body:
            if candidate.detect(signed):
                return candidate
        raise SignatureMismatch("the request carries no signature of a supported scheme")

    # ------------------------------------------------------------- verification

    def _verify(
        self,
        signed: SigningRequest,
        signer: Signer,
        auth: ParsedAuth,
        endpoint: Endpoint,
        body: bytes | None,
    ) -> None:
        if not constant_time_equal(auth.access_key, signers.credential_id(signer, endpoint.proxy)):
            raise SignatureMismatch()
        self._check_fresh(auth)
        signer.verify(signed, auth, endpoint.proxy, body)

    def _check_fresh(self, auth: ParsedAuth) -> None:
        if auth.signed_at is None:
            return
        now = self.clock()
        skew = timedelta(seconds=self.config.security.clock_skew_seconds)
        if auth.signed_at > now + skew:
            raise RequestExpired("the request is signed with a time in the future")
        if auth.expires is not None:
            if now > auth.signed_at + timedelta(seconds=auth.expires):
                raise RequestExpired("the presigned request has expired")
        elif auth.signed_at < now - skew:
            raise RequestExpired("the request signature is too old")

    async def _read_body_if_needed(
        self, request: web.BaseRequest, auth: ParsedAuth
    ) -> bytes | None:
        if auth.body is not BodyPolicy.BUFFER:
            return None
        return await read_bounded(request, self.config.http.max_body_bytes)

    # ------------------------------------------------------------- forwarding

    async def _pass_unsigned(
        self, request: web.BaseRequest, ctx: RequestContext, route: _Route
    ) -> web.StreamResponse:
        """Unknown account with ``ForbiddenAccountNotFound: false``: pass the request on as it
        came, only to a public API host of a known vendor."""
        assert route.dest is not None
        domains = _vendor_domains(route.vendor_hint)
        require_vendor_host(route.dest, domains, route.vendor_hint or "cloud vendor")
        ctx.upstream_url = f"{route.dest.scheme}://{route.dest.host}"
        up = route.signed.copy()
        body = await read_bounded(request, self.config.http.max_body_bytes)
        return await self._forwarder.forward(request, ctx, up, body, None)

    async def _pass_unverified(
        self, request: web.BaseRequest, ctx: RequestContext, route: _Route, body: bytes | None
    ) -> web.StreamResponse:
        """``ForbiddenProxyCredentialErr: false``: forward exactly what came, never a signature
        the proxy computed, and only where the account's requests may go."""
        up = _upstream_request(route, self._accounts)
        ctx.upstream_url = f"{up.scheme}://{up.host}"
        ctx.error_code = SignatureMismatch.code
        if body is None:
            body = await read_bounded(request, self.config.http.max_body_bytes)
        return await self._forwarder.forward(request, ctx, up, body, None)

    # ------------------------------------------------------------- answers

    def _version_headers(self) -> dict[str, str]:
        return {"X-Mcdn-Proxy-Version": __version__}

    def _error(
        self, ctx: RequestContext, exc: ProxyError, request: web.BaseRequest | None = None
    ) -> web.Response:
        ctx.status, ctx.error_code = exc.status, exc.code
        headers = {**self._version_headers(), "X-Mcdn-Proxy-Status": "Failed"}
        headers["X-Mcdn-Request-Id"] = ctx.request_id
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if ctx.mode == "native" and request is not None:
            lowered = {k.lower(): v for k, v in request.headers.items()}
            native = native_errors.render(
                ctx.vendor, ctx.service, lowered, exc.code, exc.message, ctx.request_id
            )
            if native is not None:
                content_type, body, extra = native
                headers.update(extra)
                return web.Response(
                    body=body, status=exc.status, headers=headers, content_type=content_type
                )
        payload = {
            "ResponseMetadata": {
                "Error": {"Code": exc.code, "Message": exc.message},
                "RequestId": ctx.request_id,
                "Version": __version__,
            }
        }
        return web.json_response(payload, status=exc.status, headers=headers)

    async def _finish(self, ctx: RequestContext) -> None:
        if ctx.mode in ("keyproxy", "native"):
            request_log_line(
                request_id=ctx.request_id,
                method=ctx.method,
                mode=ctx.mode,
                status=ctx.status or 0,
                account=ctx.account,
                vendor=ctx.vendor,
                service=ctx.service,
                action=ctx.action,
                upstream_host=ctx.upstream_url,
                bytes_out=ctx.bytes_out,
                latency_ms=(time.perf_counter() - ctx.started) * 1000,
                error_code=ctx.error_code,
            )
        try:
            await _run_hooks(self.hooks.after_response, ctx)
        except Exception:
            log.exception("after_response hook failed")


# ---------------------------------------------------------------------- helpers


@dataclass(slots=True)
class _Route:
    endpoint: Endpoint | None
    signer: Signer | None
    auth: ParsedAuth | None
    signed: SigningRequest
    dest: Destination | None  # key-proxy mode: the origin URI's destination
    vendor_hint: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint is not None and self.signer is None:
            raise ValueError("a routed endpoint needs a signer")


def _parse(signer: Signer, req: SigningRequest) -> ParsedAuth:
    try:
        return signer.parse(req)
    except ProxyError:
        raise
    except Exception as exc:  # a signer must only raise MalformedSignature; be safe anyway
        log.warning("signer %s failed to parse: %s", signer.vendor, type(exc).__name__)
        raise MalformedSignature("the signature cannot be parsed") from None


def _vendor_hint(request: web.BaseRequest) -> str | None:
    hint = request.headers.get("x-mcdn-vendor-name", "").strip().lower()
    return hint or None


def _vendor_domains(hint: str | None) -> tuple[str, ...]:
    if hint:
        try:
            return signers.get(hint).public_domains
        except KeyError:
            return ()
    return tuple(d for s in signers.all_signers() for d in s.public_domains)


def _upstream_request(route: _Route, accounts: _Accounts) -> SigningRequest:
    """The request as it will be sent: the endpoint's ``Upstream`` wins, else the origin URI
    (key-proxy mode, vendor hosts only) or the vendor's public endpoint (native mode)."""
    endpoint, signer, auth = route.endpoint, route.signer, route.auth
    assert endpoint is not None and signer is not None and auth is not None
    up = route.signed.copy()
    override = accounts.upstreams.get(endpoint.cloud_account_name)
    if override is not None:
        dest = override
    elif route.dest is not None:
        dest = route.dest
        require_vendor_host(dest, signer.public_domains, endpoint.vendor)
    else:
        base = signer.native_upstream(route.signed, auth)
        if base is None:
            raise MalformedRequest(
                "no public endpoint is known for this service; set Upstream for the account"
            )
        dest = parse_base_url(base)
        require_vendor_host(dest, signer.public_domains, endpoint.vendor)
    up.scheme, up.host = dest.scheme, dest.host
    up.path = dest.prefix + up.path if dest.prefix else up.path
    return up


def _kept_headers(value: str) -> frozenset[str]:
    # key-proxy splits on "," without trimming; we also accept spaces around names.
    return frozenset(p.strip().lower() for p in value.split(",") if p.strip())


def _request_id(request: web.BaseRequest) -> str:
    given = request.headers.get("x-mcdn-request-id", "")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


def _check_header_size(request: web.BaseRequest, limit: int) -> None:
    total = 0
    for raw_name, raw_value in request.raw_headers:
        total += len(raw_name) + len(raw_value) + 4
    total += len(request.raw_path)
    if total > limit:
        raise HeadersTooLarge(f"request headers exceed {limit} bytes")
    for name, value in request.headers.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedRequest(f"header {name!r} is not valid UTF-8") from None


def _bound_ports(site: web.BaseSite) -> list[int]:
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return [int(s.getsockname()[1]) for s in sockets]
