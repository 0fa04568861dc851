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
import hashlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from keybroker import __version__, metrics, native_errors, policy, signers
from keybroker.audit import AuditLog, request_event
from keybroker.config import Config, Endpoint
from keybroker.config_load import validate
from keybroker.context import RequestContext
from keybroker.credentials import Credential
from keybroker.destinations import (
    require_vendor_host,
)
from keybroker.errors import (
    Forbidden,
    HeadersTooLarge,
    MalformedRequest,
    ProxyError,
    Replayed,
    RequestExpired,
    SignatureMismatch,
)
from keybroker.forwarding import Forwarder, read_bounded
from keybroker.httpclient import UpstreamClient
from keybroker.httpserver import HttpServer, Request, Response, StreamResponse, json_response
from keybroker.keyservice import KeyService
from keybroker.keyservice import attach as attach_key_service
from keybroker.limits import AccountLimits, limits_from_config
from keybroker.logs import request_log_line
from keybroker.netguard import GuardedResolver
from keybroker.redact import register_config_secrets
from keybroker.replay import ReplayCache, replay_cache_from_config
from keybroker.routing import Route, Router, upstream_request, vendor_domains
from keybroker.secret import constant_time_equal
from keybroker.signers import BodyPolicy, ParsedAuth, Signer, SigningRequest
from keybroker.spool import SPOOL_THRESHOLD, SpooledBody, spool_body

__all__ = ["Hooks", "Proxy", "RequestContext"]

log = logging.getLogger("keybroker.proxy")

HookFn = Callable[[RequestContext], Awaitable[None] | None]
ServiceHandler = Callable[[Request, RequestContext], Awaitable[StreamResponse]]


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
        self._client: UpstreamClient | None = None
        self._forwarder_: Forwarder | None = None
        self._server: HttpServer | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        validate(config)
        self.config = config
        self._router = Router(config)
        self._limits = AccountLimits()
        self._audit: AuditLog | None = None
        self._replay: ReplayCache | None = None
        #: keybroker's own services on the proxy port, by first path segment (``_keybroker``)
        self.services: dict[str, ServiceHandler] = {}
        self._keyservice: KeyService | None = attach_key_service(self)  # KeyService.Enabled
        self._resolver: GuardedResolver | None = None  # made in start(): it needs the loop
        register_config_secrets(config)
        self.ports: list[int] = []

    def reload(self, config: Config) -> None:
        """Swap in a new config; in-flight requests keep the old one.  Raises ``ConfigError``
        (and keeps the old config) if the new one is invalid."""
        validate(config)
        router = Router(config)
        register_config_secrets(config)
        if self._audit is not None and config.audit != self.config.audit:
            new_audit = AuditLog.open(config.audit)
            self._audit, old = new_audit, self._audit
            old.close()
        if self._resolver is not None:
            self._resolver.trust(router.accounts.upstream_hosts())
        if config.key_service != self.config.key_service:
            log.warning("KeyService changes take effect after a restart (key policies now)")
        self.config, self._router = config, router

    @property
    def audit(self) -> AuditLog | None:
        """The audit log while the proxy runs: the key service records its events in it."""
        return self._audit

    # ---------------------------------------------------------------- lifecycle

    async def start(
        self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``Http.Address`` (or ``host``/``port``, or an already bound listening
        ``sock`` shared by worker processes); TLS when ``Http.Tls.Enabled``."""
        from keybroker.serving import listen

        self._audit = AuditLog.open(self.config.audit)
        self._limits = limits_from_config(
            self.config.security, stale_after=self.config.http.upstream_read_timeout * 2 + 60
        )
        self._replay = replay_cache_from_config(
            self.config.security, shared_path=os.environ.get("KEYBROKER_REPLAY_SOCKET")
        )
        http = self.config.http
        self._resolver = GuardedResolver()
        self._resolver.trust(self._router.accounts.upstream_hosts())
        self._client = UpstreamClient(
            self._resolver,
            connect_timeout=http.upstream_connect_timeout,
            read_timeout=http.upstream_read_timeout,
        )
        self._forwarder_ = Forwarder(
            self._client, http.max_body_bytes, self._version_headers(), http.client_timeout
        )
        # the parser's own bound is generous; Http.MaxHeaderBytes is checked (431) in _admit
        server = HttpServer(
            self._handle,
            max_head_bytes=max(2 * http.max_header_bytes, 64 * 1024),
            header_timeout=http.client_timeout or 60.0,
            secure=http.tls.enabled,
        )
        self._server = server
        await listen(server, http, host, port, sock=sock)
        self.ports = server.ports
        if self._keyservice is not None:
            await self._keyservice.start()

    async def stop(self) -> None:
        """Stop accepting, wait for in-flight requests (up to ``Http.ShutdownTimeout``), close."""
        self._draining = True
        if self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), self.config.http.shutdown_timeout)
            except TimeoutError:
                log.warning("shutdown deadline reached with %d requests in flight", self._inflight)
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self._keyservice is not None:
            await self._keyservice.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None
        if self._replay is not None:
            await self._replay.close()
            self._replay = None
        await self._limits.close()

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

    async def _handle(self, request: Request) -> StreamResponse:
        ctx = RequestContext(
            request_id=_request_id(request),
            mode="native",
            method=request.method,
            remote=request.remote,
        )
        self._inflight += 1
        self._idle.clear()
        metrics.DEFAULT.inflight.inc()
        try:
            return await self._serve(request, ctx)
        finally:
            self._inflight -= 1
            metrics.DEFAULT.inflight.dec()
            if not self._inflight:
                self._idle.set()
            await self._finish(ctx)

    async def _serve(self, request: Request, ctx: RequestContext) -> StreamResponse:
        try:
            health = self._health(request)
            if health is not None:
                ctx.mode = "health"
                ctx.status = health.status
                return health
            service = self.services.get(_first_segment(request.path)) if self.services else None
            if service is not None:
                ctx.mode = "native"
                return await service(request, ctx)
            return await self._proxy(request, ctx)
        except ProxyError as exc:
            return self._error(ctx, exc, request)
        except Exception:
            log.exception("internal error", extra={"fields": {"request_id": ctx.request_id}})
            err = ProxyError("internal error; see the proxy log for this request id")
            return self._error(ctx, err, request)

    async def authenticate(self, request: Request, ctx: RequestContext) -> tuple[Endpoint, bytes]:
        """Verify a request signed with an account's proxy credential (any registered scheme,
        addressed natively) and return the account and the whole (bounded) body.

        For services keybroker itself offers on the proxy's port (the key service): a
        platform authenticates with the proxy credentials it already has.  Raises the same
        ``ProxyError``s as proxying (401, 404, 400, 413, ...); the policy check is the
        service's.
        """
        self._admit(request)
        route = await self._router.native(request, ctx)
        endpoint, signer, auth = route.endpoint, route.signer, route.auth
        assert endpoint is not None and signer is not None and auth is not None
        ctx.account, ctx.vendor, ctx.service = (
            endpoint.cloud_account_name,
            endpoint.vendor,
            auth.service,
        )
        limit = endpoint.max_body_bytes or self.config.http.max_body_bytes
        body = route.signed.body
        if body is None:
            body = await read_bounded(request, limit, self.config.http.client_timeout)
        claimed = auth.payload_sha256 if auth.body is BodyPolicy.CLAIMED_SHA256 else None
        if claimed and not constant_time_equal(hashlib.sha256(body).hexdigest(), claimed.lower()):
            raise SignatureMismatch("the body does not match the signed payload hash")
        self._verify(route.signed, signer, auth, endpoint, body)
        await self._check_replay(route.signed, auth, endpoint, body)  # a key request is one use
        policy.check_source(endpoint.policy, request.remote)
        return endpoint, body

    def _admit(self, request: Request) -> None:
        """Checks before anything is parsed: header size (431), client allow-list (403)."""
        _check_header_size(request, self.config.http.max_header_bytes)
        if not policy.ip_allowed(request.remote, self.config.security.allowed_client_cidrs):
            raise Forbidden("this client address may not use the proxy")

    def _health(self, request: Request) -> Response | None:
        if request.method != "GET" or "authorization" in request.headers:
            return None
        if "x-mcdn-origin-uri" in request.headers or request.query_string:
            return None
        if request.path == "/ping":
            return Response(text="pong", headers=self._version_headers())
        if request.path == "/metrics":
            body = metrics.DEFAULT.render().encode("utf-8")
            headers = {**self._version_headers(), "Content-Type": metrics.CONTENT_TYPE}
            return Response(body=body, headers=headers)
        if request.path == "/healthz":
            return json_response({"status": "ok"}, headers=self._version_headers())
        if request.path == "/readyz":
            ready = self._client is not None and not self._draining
            return json_response(
                {"status": "ready" if ready else "draining"},
                status=200 if ready else 503,
                headers=self._version_headers(),
            )
        return None

    async def _proxy(self, request: Request, ctx: RequestContext) -> StreamResponse:
        self._admit(request)
        router = self._router
        if "x-mcdn-origin-uri" in request.headers or "x-mcdn-cloud-account-name" in request.headers:
            ctx.mode = "keyproxy"
            route = await router.keyproxy(request)
        else:
            route = await router.native(request, ctx)
        if route.endpoint is None:
            return await self._pass_unsigned(request, ctx, route)
        endpoint = route.endpoint
        ctx.account, ctx.vendor = endpoint.cloud_account_name, endpoint.vendor
        limits = self._limits
        if limits.local:  # no I/O: no async context manager per request
            limits.enter(endpoint)
            try:
                return await self._proxy_account(request, ctx, route, endpoint)
            finally:
                limits.leave(endpoint)
        async with limits.slot(endpoint):
            return await self._proxy_account(request, ctx, route, endpoint)

    async def _proxy_account(
        self, request: Request, ctx: RequestContext, route: Route, endpoint: Endpoint
    ) -> StreamResponse:
        signer, auth = route.signer, route.auth
        # a routed endpoint always has a signer and a parsed signature
        assert signer is not None and auth is not None
        ctx.service, ctx.region, ctx.action = auth.service, auth.region, auth.action
        limit = endpoint.max_body_bytes or self.config.http.max_body_bytes
        body = route.signed.body
        spooled = None
        if body is None and auth.body is BodyPolicy.BUFFER:
            if _spools(signer, request):
                spooled = await spool_body(request, limit, self.config.http.client_timeout)
                auth.body_sha256 = spooled.sha256
            else:
                body = await read_bounded(request, limit, self.config.http.client_timeout)
        try:
            return await self._verified(request, ctx, route, endpoint, body, spooled, limit)
        finally:
            if spooled is not None:
                spooled.close()

    async def _verified(
        self,
        request: Request,
        ctx: RequestContext,
        route: Route,
        endpoint: Endpoint,
        body: bytes | None,
        spooled: SpooledBody | None,
        limit: int,
    ) -> StreamResponse:
        signer, auth = route.signer, route.auth
        assert signer is not None and auth is not None
        try:
            self._verify(route.signed, signer, auth, endpoint, body)
        except (SignatureMismatch, RequestExpired):
            if self.config.forbidden.forbidden_proxy_credential_err:
                raise
            return await self._pass_unverified(request, ctx, route, body or spooled)
        await self._check_replay(route.signed, auth, endpoint, body)
        ctx.action = _action(route, auth, body)
        policy.check(endpoint.policy, _facts(ctx, request))
        upstream = upstream_request(route, self._router.accounts)
        ctx.upstream_url = f"{upstream.scheme}://{upstream.host}"
        if self.hooks.before_forward:
            await _run_hooks(self.hooks.before_forward, ctx)
        signer.resign(upstream, auth, endpoint.real, body, self.clock())
        if upstream.body is not None:  # a body-credential scheme re-signed inside the body
            body = upstream.body
        # A body streamed through (its hash claimed in a header, unsigned, or chunk-signed)
        # is never held, so only the account's own MaxBodyBytes bounds it; Http.MaxBodyBytes
        # bounds what the proxy must buffer.
        stream_limit = endpoint.max_body_bytes or _UNBOUNDED
        return await self._forwarder.forward(
            request, ctx, upstream, body or spooled, auth, stream_limit
        )

    # ------------------------------------------------------------- verification

    def _verify(
        self,
        signed: SigningRequest,
        signer: Signer,
        auth: ParsedAuth,
        endpoint: Endpoint,
        body: bytes | None,
    ) -> None:
        cred = _proxy_credential(signer, endpoint, auth.access_key)
        if cred.expires_at is not None and self.clock() >= cred.expires_at:
            raise SignatureMismatch("the proxy credential has expired")
        self._check_fresh(auth)
        signer.verify(signed, auth, cred, body)

    async def _check_replay(
        self, signed: SigningRequest, auth: ParsedAuth, endpoint: Endpoint, body: bytes | None
    ) -> None:
        """Refuse a second use of the same signed request within its validity.

        Only for schemes that sign a time: a scheme without one (QBox, UCloud, Baishan) makes
        two legitimate identical requests indistinguishable from a replay, forever.
        """
        cache = self._replay
        if cache is None or auth.signed_at is None:
            return
        skew = self.config.security.clock_skew_seconds
        valid_until = auth.signed_at.timestamp() + max(skew, auth.expires or 0)
        ttl = valid_until - self.clock().timestamp() + 1.0
        if ttl <= 0:
            return
        key = _replay_key(endpoint.vendor, signed, body, auth.body_sha256)
        if not await cache.first_use(key, min(ttl, 30 * 86400)):
            raise Replayed("this signed request was already used (replay)")

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

    # ------------------------------------------------------------- forwarding

    async def _pass_unsigned(
        self, request: Request, ctx: RequestContext, route: Route
    ) -> StreamResponse:
        """Unknown account with ``ForbiddenAccountNotFound: false``: pass the request on as it
        came, only to a public API host of a known vendor."""
        assert route.dest is not None
        domains = vendor_domains(route.vendor_hint)
        require_vendor_host(route.dest, domains, route.vendor_hint or "cloud vendor")
        ctx.upstream_url = f"{route.dest.scheme}://{route.dest.host}"
        up = route.signed.copy()
        body = await read_bounded(
            request, self.config.http.max_body_bytes, self.config.http.client_timeout
        )
        return await self._forwarder.forward(request, ctx, up, body, None)

    async def _pass_unverified(
        self,
        request: Request,
        ctx: RequestContext,
        route: Route,
        body: bytes | SpooledBody | None,
    ) -> StreamResponse:
        """``ForbiddenProxyCredentialErr: false``: forward exactly what came, never a signature
        the proxy computed, and only where the account's requests may go."""
        up = upstream_request(route, self._router.accounts)
        ctx.upstream_url = f"{up.scheme}://{up.host}"
        ctx.error_code = SignatureMismatch.code
        if body is None:
            body = await read_bounded(
                request, self.config.http.max_body_bytes, self.config.http.client_timeout
            )
        return await self._forwarder.forward(request, ctx, up, body, None)

    # ------------------------------------------------------------- answers

    def _version_headers(self) -> dict[str, str]:
        return {"X-Mcdn-Proxy-Version": __version__}

    def _error(
        self, ctx: RequestContext, exc: ProxyError, request: Request | None = None
    ) -> Response:
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
                native_resp = Response(
                    body=body, status=exc.status, headers=headers, content_type=content_type
                )
                return native_resp
        payload = {
            "ResponseMetadata": {
                "Error": {"Code": exc.code, "Message": exc.message},
                "RequestId": ctx.request_id,
                "Version": __version__,
            }
        }
        # A refusal before the body arrived (a client waiting for 100-continue never sends
        # it) closes the connection: StreamResponse.prepare sees the body incomplete.
        return json_response(payload, status=exc.status, headers=headers)

    def _record_audit(self, ctx: RequestContext) -> None:
        if self._audit is None or not self._audit.enabled:
            return
        try:
            self._audit.record(request_event(ctx))
        except (OSError, ValueError, TypeError) as exc:
            # the answer is gone already; a failing audit must be loud in the log
            log.error(
                "audit record failed: %s",
                type(exc).__name__,
                extra={"fields": {"request_id": ctx.request_id}},
            )

    async def _finish(self, ctx: RequestContext) -> None:
        if ctx.mode in ("keyproxy", "native", "keyservice"):
            request_log_line(
                request_id=ctx.request_id,
                method=ctx.method,
                # a key-service request is addressed natively; its action says "keyservice:"
                mode="native" if ctx.mode == "keyservice" else ctx.mode,
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
            metrics.DEFAULT.observe(ctx)
            self._record_audit(ctx)
        if not self.hooks.after_response:
            return
        try:
            await _run_hooks(self.hooks.after_response, ctx)
        except Exception:
            log.exception("after_response hook failed")


# ---------------------------------------------------------------------- helpers


def _replay_key(
    vendor: str, signed: SigningRequest, body: bytes | None, body_sha256: str | None = None
) -> bytes:
    """Everything a signature can cover: two requests with the same key are the same signed
    request (the signature lives in the Authorization header, the query or the body)."""
    h = hashlib.sha256()
    for part in (vendor, signed.method, signed.host, signed.path, signed.query):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for value in signed.headers.getall("authorization", []):
        h.update(value.encode("utf-8", "surrogateescape") + b"\0")
    if body:
        h.update(hashlib.sha256(body).digest())
    elif body_sha256:
        h.update(bytes.fromhex(body_sha256))
    return h.digest()


_UNBOUNDED = 1 << 62


def _spools(signer: Signer, request: Request) -> bool:
    """Spool (hash into a temporary file) rather than buffer: only for signers that can verify
    from the hash alone, and only when the body is large or of unknown length."""
    if not request.body_exists or not getattr(signer, "accepts_body_sha256", False):
        return False
    length = request.content_length
    return length is None or length > SPOOL_THRESHOLD


def _first_segment(path: str) -> str:
    """``/_keybroker/kms/v1/...`` -> ``_keybroker``: services register under one segment."""
    return path.lstrip("/").split("/", 1)[0]


def _proxy_credential(signer: Signer, endpoint: Endpoint, access_key: str) -> Credential:
    """The account's proxy credential named in the signature (several may be valid during a
    rotation); every candidate is compared, in constant time."""
    found = None
    for cred in (endpoint.proxy, *endpoint.additional_proxies):
        if constant_time_equal(access_key, signers.credential_id(signer, cred)):
            found = cred
    if found is None:
        raise SignatureMismatch()
    return found


def _action(route: Route, auth: ParsedAuth, body: bytes | None) -> str | None:
    """The API action: from the signature scheme, a form body, or a REST API's method and path."""
    if auth.action:
        return auth.action
    signed = route.signed
    found = policy.form_action(signed.headers.get("content-type"), body)
    if found:
        return found
    vendor = route.endpoint.vendor if route.endpoint else ""
    return policy.rest_action(
        vendor, auth.service, signed.method, signed.path, signed.query, signed.host
    )


def _facts(ctx: RequestContext, request: Request) -> policy.RequestFacts:
    return policy.RequestFacts(ctx.service, ctx.action, ctx.region, request.method, request.remote)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-mcdn-request-id", "")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return os.urandom(16).hex()  # 128 random bits, as uuid4 but without its object


def _check_header_size(request: Request, limit: int) -> None:
    if request.head_size > limit:
        raise HeadersTooLarge(f"request headers exceed {limit} bytes")
    if request.bad_header is not None:
        raise MalformedRequest(f"header {request.bad_header!r} is not valid UTF-8")
