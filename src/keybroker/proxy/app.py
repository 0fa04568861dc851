"""The credential proxy: find the account, verify, re-sign, forward, stream back.

The HTTP layer stays thin and knows nothing vendor-specific: every scheme lives in a
:mod:`keybroker.signers` module.  Two ways to address the proxy share one port:

* *key-proxy mode* — the request carries ``X-Mcdn-Origin-Uri`` / ``X-Mcdn-Cloud-Account-Name``
  (volcengine key-proxy's wire contract); the platform signed for the origin URI.
* *native mode* — an unmodified SDK whose endpoint is keybroker; the account is found from
  the proxy access key in the signature, the upstream from ``Upstream`` or the vendor's rule.

:class:`Proxy` holds the lifecycle and the order of a request's steps; the steps themselves
are plain functions called directly: :mod:`keybroker.proxy.routing` (which account),
:mod:`keybroker.proxy.checks` (what a request passes before it is forwarded),
:mod:`keybroker.proxy.forwarding` and :mod:`keybroker.proxy.passthrough` (sending it on),
:mod:`keybroker.proxy.answers` (what the proxy answers itself),
:mod:`keybroker.proxy.recording` (what a
request leaves behind) and :mod:`keybroker.proxy.hooks` (the library's hooks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from keybroker import signers
from keybroker.audit.event import audit_path, policy_rule
from keybroker.audit.refusals import RefusalFolder
from keybroker.audit.trail import AuditLog
from keybroker.config.check import validate
from keybroker.context import RequestContext
from keybroker.credentials import Credential
from keybroker.errors import ProxyError, RequestExpired, SignatureMismatch
from keybroker.http.client import UpstreamClient
from keybroker.http.messages import Request, StreamResponse
from keybroker.http.netguard import GuardedResolver
from keybroker.http.server import HttpServer
from keybroker.http.transport import Transport
from keybroker.http.upstream import Delivery
from keybroker.keyservice import KeyService
from keybroker.keyservice import attach as attach_key_service
from keybroker.keyservice.signed import require_signed_whole
from keybroker.logs.redact import register_config_secrets
from keybroker.metrics import instruments as metrics
from keybroker.proxy import policy
from keybroker.proxy.answers import error_response, health_response, version_headers
from keybroker.proxy.checks import (
    admit,
    check_replay,
    policy_facts,
    request_operation,
    verify_signature,
)
from keybroker.proxy.forwarding import Forwarder, read_bounded
from keybroker.proxy.hooks import Hooks, run_hooks
from keybroker.proxy.limits import AccountLimits, limits_from_config
from keybroker.proxy.passthrough import pass_unsigned, pass_unverified
from keybroker.proxy.recording import finish, write_ahead
from keybroker.proxy.routing import Route, Router, upstream_request
from keybroker.proxy.spool import SPOOL_THRESHOLD, SpooledBody, spool_body
from keybroker.replay import ReplayCache, replay_cache_from_config
from keybroker.secret import constant_time_equal
from keybroker.settings import Config, Endpoint
from keybroker.signers import BodyPolicy, Signer, SigningRequest

__all__ = ["Proxy"]

log = logging.getLogger("keybroker.proxy")

ServiceHandler = Callable[[Request, RequestContext], Awaitable[StreamResponse]]


class Proxy:
    """The proxy server.  Build it from a :class:`~keybroker.settings.Config` (validated here:
    ``ConfigError`` lists every problem), then ``run()``
    (blocking) or ``await start()`` / ``await stop()``.

    ``clock`` returns the current UTC time (injectable for tests).  ``transport`` is what
    requests are forwarded through (:class:`~keybroker.http.transport.Transport`): by default
    pooled sockets through the guarded resolver; a test may give an in-memory one.
    """

    def __init__(
        self,
        config: Config,
        *,
        hooks: Hooks | None = None,
        clock: Callable[[], datetime] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.hooks = hooks or Hooks()
        #: what requests are forwarded through; by default, pooled sockets to the upstreams
        #: through the guarded resolver (built in start())
        self._transport = transport
        self.clock = clock or (lambda: datetime.now(UTC))
        self._client: Transport | None = None
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
        self._refusals = RefusalFolder(lambda: self._audit)
        self._ticker: asyncio.Task[None] | None = None
        self._replay: ReplayCache | None = None
        #: keybroker's own services on the proxy port, by first path segment (``_keybroker``)
        self.services: dict[str, ServiceHandler] = {}
        self._keyservice: KeyService | None = attach_key_service(self)  # KeyService.Enabled
        self._resolver: GuardedResolver | None = None  # made in start(): it needs the loop
        register_config_secrets(config)
        metrics.credential_expiries(config.endpoints)
        self.ports: list[int] = []

    def reload(self, config: Config) -> None:
        """Swap in a new config; in-flight requests keep the old one.  Raises ``ConfigError``
        (and keeps the old config) if the new one is invalid."""
        validate(config)
        router = Router(config)
        _prepare_signers(config)
        register_config_secrets(config)
        metrics.credential_expiries(config.endpoints)
        if self._audit is not None and config.audit != self.config.audit:
            new_audit = AuditLog.open(config.audit)
            self._audit, old = new_audit, self._audit
            old.close()
        if self._resolver is not None:
            self._resolver.trust(router.accounts.upstream_hosts())
        if config.key_service != self.config.key_service:
            # Endpoints' KeyPolicy is read per request (it changes now); the KeyService block,
            # gRPC Clients included, is read when the services start.
            log.warning(
                "KeyService changes take effect after a restart "
                "(endpoints' key policies take effect now)"
            )
        self.config, self._router = config, router
        if self._server is not None:
            self._server.limits.max_total = config.http.max_connections
            self._server.limits.max_per_client = config.http.max_connections_per_client

    def _client_allowed(self, remote: str | None) -> bool:
        """``Security.AllowedClientCIDRs``, checked as a connection is accepted."""
        return policy.ip_allowed(remote, self.config.security.allowed_client_cidrs)

    def on_refuse(self, source: str | None, reason: str) -> None:
        """Every refusal the HTTP layer decides (a connection not admitted, a request that
        cannot be parsed) passes here: ``source`` is the client address, ``reason`` says
        why.  Logged at debug (an attacker's flood must not flood the log); folded into the
        audit log (one record per source and reason a second, with a count)."""
        log.debug("refused", extra={"fields": {"source": source, "reason": reason}})
        self._refusals.add(source, reason)

    @property
    def audit(self) -> AuditLog | None:
        """The audit log while the proxy runs: the key service records its events in it."""
        return self._audit

    @property
    def ready(self) -> bool:
        """Started and not draining: what ``/readyz`` answers."""
        return self._client is not None and not self._draining

    # ---------------------------------------------------------------- lifecycle

    async def start(
        self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``Http.Address`` (or ``host``/``port``, or an already bound listening
        ``sock`` shared by worker processes); TLS when ``Http.Tls.Enabled``."""
        from keybroker.server.listen import listen

        _prepare_signers(self.config)  # before the first request, not by it
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
        self._client = self._transport or UpstreamClient(
            self._resolver,
            connect_timeout=http.upstream_connect_timeout,
            read_timeout=http.upstream_read_timeout,
        )
        self._forwarder_ = Forwarder(
            self._client,
            http.max_body_bytes,
            version_headers(),
            http.client_timeout,
            before_send=self._write_ahead,
        )
        # the parser's own bound is generous; Http.MaxHeaderBytes is checked (431) in admit
        server = HttpServer(
            self._handle,
            max_head_bytes=max(2 * http.max_header_bytes, 64 * 1024),
            header_timeout=http.client_timeout or 60.0,
            secure=http.tls.enabled,
            max_connections=http.max_connections,
            max_connections_per_client=http.max_connections_per_client,
            allow_client=self._client_allowed,
            on_refuse=self.on_refuse,
        )
        self._server = server
        self._ticker = asyncio.create_task(self._audit_ticker())
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
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._refusals.flush()
        if self._audit is not None:
            self._audit.close()  # the shutdown checkpoint
            self._audit = None
        if self._replay is not None:
            await self._replay.close()
            self._replay = None
        await self._limits.close()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain in-flight requests and return.  Sets up
        logging from the config's ``Log`` section first (as ``keybroker serve`` does), unless
        the application configured keybroker's loggers itself."""
        from keybroker.logs.setup import setup_logging
        from keybroker.server.listen import run_until_signalled

        if not logging.getLogger("keybroker").handlers:
            setup_logging(self.config.log)
        run_until_signalled(self)

    async def _write_ahead(self, ctx: RequestContext) -> None:
        await write_ahead(ctx, self._audit)

    async def _audit_ticker(self) -> None:
        """About once a second: fold HTTP-layer refusals into records, and sign a checkpoint
        when ``Audit.CheckpointInterval`` has passed."""
        while True:
            await asyncio.sleep(1.0)
            try:
                self._refusals.flush()
                if self._audit is not None:
                    self._audit.checkpoint_if_due()
            except (OSError, ValueError) as exc:
                log.error("audit housekeeping failed: %s", type(exc).__name__)

    @property
    def _forwarder(self) -> Forwarder:
        if self._forwarder_ is None:
            raise RuntimeError("the proxy is not started")
        return self._forwarder_

    # ---------------------------------------------------------------- request handling

    async def _handle(self, request: Request) -> StreamResponse:
        ctx = RequestContext(
            request_id=os.urandom(16).hex(),  # 128 random bits, as uuid4 but without its object
            mode="native",
            method=request.method,
            remote=request.remote,
            client_request_id=_client_request_id(request),
            path=audit_path(request.raw_path),
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
            await finish(ctx, self._audit, self.hooks.after_response)

    async def _serve(self, request: Request, ctx: RequestContext) -> StreamResponse:
        try:
            cidrs = self.config.security.metrics_client_cidrs
            health = health_response(request, cidrs, self.ready)
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
            return error_response(ctx, exc, request)
        except Exception:
            log.exception("internal error", extra={"fields": {"request_id": ctx.request_id}})
            err = ProxyError("internal error; see the proxy log for this request id")
            return error_response(ctx, err, request)

    async def authenticate(
        self, request: Request, ctx: RequestContext, max_body: int | None = None
    ) -> tuple[Endpoint, bytes]:
        """Verify a request signed with an account's proxy credential (any registered scheme,
        addressed natively) and return the account and the whole (bounded) body.  ``max_body``
        bounds the body tighter than the account does (a route's own limit): a longer body,
        chunked or not, is refused as soon as it passes the bound, before the rest is read.

        For services keybroker itself offers on the proxy's port (the key service): a
        platform authenticates with the proxy credentials it already has.  Raises the same
        ``ProxyError``s as proxying (401, 404, 400, 413, ...); the policy check is the
        service's.
        """
        admit(request, self.config)
        route = await self._router.native(request, ctx, max_body)
        endpoint, signer, auth = route.endpoint, route.signer, route.auth
        assert endpoint is not None and signer is not None and auth is not None
        ctx.account, ctx.vendor, ctx.service = (
            endpoint.cloud_account_name,
            endpoint.vendor,
            auth.service,
        )
        require_signed_whole(auth)  # before any body is read or the replay cache consulted
        limit = endpoint.max_body_bytes or self.config.http.max_body_bytes
        if max_body is not None:
            limit = min(limit, max_body)
        body = route.signed.body
        if body is None:
            body = await read_bounded(request, limit, self.config.http.client_timeout)
        claimed = auth.payload_sha256 if auth.body is BodyPolicy.CLAIMED_SHA256 else None
        if claimed and not constant_time_equal(auth.body_digest(body), claimed.lower()):
            raise SignatureMismatch("the body does not match the signed payload hash")
        verify_signature(route.signed, signer, auth, endpoint, body, self.clock, self.config)
        # a key request is one use
        await check_replay(
            self._replay, route.signed, auth, endpoint, body, self.clock, self.config
        )
        policy.check_source(endpoint.policy, request.remote)
        return endpoint, body

    async def _proxy(self, request: Request, ctx: RequestContext) -> StreamResponse:
        admit(request, self.config)
        router = self._router
        if "x-mcdn-origin-uri" in request.headers or "x-mcdn-cloud-account-name" in request.headers:
            ctx.mode = "keyproxy"
            route = await router.keyproxy(request)
            signed = route.signed  # the origin URI's target is what the record names
            ctx.path = audit_path(f"{signed.path}?{signed.query}" if signed.query else signed.path)
        else:
            route = await router.native(request, ctx)
        if route.endpoint is None:
            return await pass_unsigned(request, ctx, route, self._forwarder, self.config.http)
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
                route.auth = auth = replace(auth, body_sha256=spooled.sha256)
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
            proxy_cred = verify_signature(
                route.signed, signer, auth, endpoint, body, self.clock, self.config
            )
        except (SignatureMismatch, RequestExpired):
            if self.config.forbidden.forbidden_proxy_credential_err:
                raise
            return await pass_unverified(
                request,
                ctx,
                route,
                body or spooled,
                self._forwarder,
                self.config.http,
            )
        upstream = upstream_request(route, self._router.accounts)
        # classified as sent: the S3 bucket the upstream reads from its host is the one here
        operation = request_operation(route, auth, body, upstream.host)
        ctx.action, ctx.resource, ctx.read_only = (
            operation.action,
            operation.resource,
            operation.read_only,
        )
        policy.check(endpoint.policy, policy_facts(ctx, request))
        ctx.rule = policy_rule(endpoint.policy)
        ctx.upstream_url = f"{upstream.scheme}://{upstream.host}"
        entry = await check_replay(
            self._replay,
            route.signed,
            auth,
            endpoint,
            body,
            self.clock,
            self.config,
            signer=signer,
            operation=operation,
        )
        delivery = Delivery()
        try:
            return await self._send(
                request, ctx, route, upstream, endpoint, proxy_cred, body, spooled, delivery
            )
        except Exception:
            if entry is not None and not delivery.started:  # it never reached the upstream
                await entry.release()
            raise

    async def _send(
        self,
        request: Request,
        ctx: RequestContext,
        route: Route,
        upstream: SigningRequest,
        endpoint: Endpoint,
        proxy_cred: Credential,
        body: bytes | None,
        spooled: SpooledBody | None,
        delivery: Delivery,
    ) -> StreamResponse:
        """Re-sign ``upstream`` with the real credential and forward it; a chunk-signed body
        goes through the signer's chunk re-signer, which checks each chunk with
        ``proxy_cred`` (the credential that verified the request)."""
        signer, auth = route.signer, route.auth
        assert signer is not None and auth is not None
        if self.hooks.before_forward:
            await run_hooks(self.hooks.before_forward, ctx)
        now = self.clock()
        resigned = signer.resign(upstream, auth, endpoint.real, body, now)
        transformer = None
        if resigned is not None and auth.body is BodyPolicy.STREAMING:
            seed = resigned.seed_signature
            transformer = signer.body_transformer(auth, proxy_cred, endpoint.real, seed, now)
        if upstream.body is not None:  # a body-credential scheme re-signed inside the body
            body = upstream.body
        # A body streamed through (its hash claimed in a header, unsigned, or chunk-signed)
        # is never held, so only the account's own MaxBodyBytes bounds it; Http.MaxBodyBytes
        # bounds what the proxy must buffer.
        stream_limit = endpoint.max_body_bytes or _UNBOUNDED
        return await self._forwarder.forward(
            request, ctx, upstream, body or spooled, auth, stream_limit, delivery, transformer
        )


# ---------------------------------------------------------------------- helpers


_UNBOUNDED = 1 << 62


def _spools(signer: Signer, request: Request) -> bool:
    """Spool (hash into a temporary file) rather than buffer: only for signers that can verify
    from the hash alone, and only when the body is large or of unknown length."""
    if not request.body_exists or not signer.accepts_body_sha256:
        return False
    length = request.content_length
    return length is None or length > SPOOL_THRESHOLD


def _prepare_signers(config: Config) -> None:
    for vendor in sorted({endpoint.vendor for endpoint in config.endpoints}):
        signers.get(vendor).prepare()


def _first_segment(path: str) -> str:
    """``/_keybroker/kms/v1/...`` -> ``_keybroker``: services register under one segment."""
    return path.lstrip("/").split("/", 1)[0]


def _client_request_id(request: Request) -> str | None:
    """The client's ``X-Mcdn-Request-Id`` when it is one printable ASCII value of at most 128
    characters (kept as ``client_request_id``; the proxy's own id is always its own)."""
    given = request.headers.get("x-mcdn-request-id", "")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return None
