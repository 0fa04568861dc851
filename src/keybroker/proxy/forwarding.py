"""Forwarding to the upstream: the request body streamed (with its claimed hash checked as it
passes), the answer streamed back unchanged.  Nothing is buffered whole without a bound."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from multidict import CIMultiDict

from keybroker.audit.event import audit_path
from keybroker.context import RequestContext
from keybroker.errors import (
    Forbidden,
    MalformedSignature,
    PayloadTooLarge,
    ProxyError,
    SignatureMismatch,
    UpstreamError,
)
from keybroker.http.messages import Request, StreamResponse
from keybroker.http.netguard import DestinationRefused
from keybroker.http.transport import Answer, Transport
from keybroker.http.upstream import Delivery, UpstreamFailure
from keybroker.proxy.spool import SpooledBody, body_chunks
from keybroker.secret import constant_time_equal
from keybroker.signers import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.base import BodyTransformer

__all__ = ["HOP_BY_HOP", "Forwarder", "read_bounded"]

log = logging.getLogger("keybroker.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # the proxy answers 100-continue itself; upstream gets the body at once
    }
)


#: called with a request's context (its ``path`` set to what goes upstream) just before the
#: upstream request starts; raising refuses the request (the audit's write-ahead)
BeforeSend = Callable[[RequestContext], Awaitable[None]]


class Forwarder:
    """Sends re-signed requests upstream over pooled keep-alive connections."""

    def __init__(
        self,
        client: Transport,
        max_body_bytes: int,
        extra_headers: dict[str, str],
        client_timeout: float | None = None,
        before_send: BeforeSend | None = None,
    ) -> None:
        self.before_send = before_send
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.client_timeout = client_timeout
        self.extra_headers = extra_headers

    async def forward(
        self,
        request: Request,
        ctx: RequestContext,
        up: SigningRequest,
        body: bytes | SpooledBody | None,
        auth: ParsedAuth | None,
        limit: int | None = None,
        delivery: Delivery | None = None,
        transformer: BodyTransformer | None = None,
    ) -> StreamResponse:
        """Send ``up`` and stream the answer back.  A body not given whole is streamed from
        the client, checked against the signed hash, bounded by ``limit``; a chunk-signed one
        through ``transformer`` (the signer's chunk re-signer).  ``delivery`` records whether
        any byte reached an upstream connection (see :class:`~keybroker.http.upstream.Delivery`)."""
        headers = CIMultiDict(up.headers)
        headers["Host"] = up.host
        data, state = self._body_for_upstream(
            request, body, auth, transformer, headers, limit or self.max_body_bytes
        )
        target = f"{up.path}?{up.query}" if up.query else up.path
        if self.before_send is not None:
            ctx.path = audit_path(target or "/")
            await self.before_send(ctx)  # nothing has gone upstream yet
        try:
            upstream = await self.client.request(
                up.method,
                up.scheme,
                up.host,
                target or "/",
                headers,
                data,
                delivery,
                resend=ctx.read_only is True,  # only what the signer knows to be a read
            )
        except _BodyRejected as exc:
            raise exc.error from None
        except DestinationRefused:
            raise Forbidden("the destination does not resolve to a public address") from None
        except (UpstreamFailure, TimeoutError, OSError) as exc:
            if state is not None and state.error is not None:
                raise state.error from None
            kind = failure_kind(exc)
            ctx.upstream_failure = kind
            log.warning(
                "upstream request failed (%s): %s",
                kind,
                _reason(exc),
                extra={"fields": {"request_id": ctx.request_id, "upstream": ctx.upstream_url}},
            )
            raise UpstreamError(f"the upstream could not be reached ({kind})") from None
        async with upstream:
            if state is not None and state.error is not None:
                raise state.error
            return await self._stream_back(request, ctx, upstream)

    def _body_for_upstream(
        self,
        request: Request,
        body: bytes | SpooledBody | None,
        auth: ParsedAuth | None,
        transformer: BodyTransformer | None,
        headers: CIMultiDict[str],
        limit: int,
    ) -> tuple[Any, _BodyState | None]:
        transformer = _transformer(auth, transformer)
        # a re-framed chunked body has the length the signer set (and signed); when the
        # upstream request carries none, the body goes with chunked transfer encoding
        resent_length = headers.get("content-length") if transformer is not None else None
        for name in ("content-length", "transfer-encoding"):
            headers.popall(name, None)
        if isinstance(body, SpooledBody):  # verified from its hash; now sent from the spool
            headers["Content-Length"] = str(body.size)
            return body.chunks(), None
        if body is not None:
            if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                headers["Content-Length"] = str(len(body))
            return (body or None), None
        if not request.body_exists:
            if transformer is not None:
                raise MalformedSignature("a chunk-signed request has no body")
            if request.content_length == 0:  # said so: S3 and others want it (411 without)
                headers["Content-Length"] = "0"
            return None, None
        length = request.content_length
        if length is not None and (transformer is None or resent_length is not None):
            headers["Content-Length"] = resent_length or str(length)
        claimed = None
        if auth is not None and auth.body is BodyPolicy.CLAIMED_SHA256:
            claimed = auth.payload_sha256
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        state = _BodyState(claimed, limit, length, self.client_timeout)
        if transformer is not None:
            return _transform(_stream_body(request, state), transformer, state), state
        return _stream_body(request, state), state

    async def _stream_back(
        self, request: Request, ctx: RequestContext, upstream: Answer
    ) -> StreamResponse:
        chunks = upstream.chunks()
        try:  # until the first body byte nothing has reached the client: a failure is a 502
            first = await anext(chunks, b"")
        except (UpstreamFailure, TimeoutError) as exc:
            ctx.upstream_failure = failure_kind(exc)
            _log_broken(ctx, exc)
            raise UpstreamError(
                f"the upstream broke off its answer ({ctx.upstream_failure})"
            ) from None
        response = StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                response.headers.add(name, value)
        response.headers.update(self.extra_headers)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        ctx.status = upstream.status
        await response.prepare(request)
        try:
            await response.write(first)
            ctx.bytes_out += len(first)
            async for chunk in chunks:
                await response.write(chunk)
                ctx.bytes_out += len(chunk)
        except (UpstreamFailure, TimeoutError) as exc:
            # Headers are gone already: the only honest signal left is a cut connection.
            ctx.error_code = UpstreamError.code
            _log_broken(ctx, exc)
            request.abort()
            return response
        await response.write_eof()
        return response


def _log_broken(ctx: RequestContext, exc: BaseException) -> None:
    log.warning(
        "upstream response broken (%s): %s",
        failure_kind(exc),
        _reason(exc),
        extra={"fields": {"request_id": ctx.request_id}},
    )


def failure_kind(exc: BaseException) -> str:
    """What went wrong with the upstream, in one word (``UpstreamFailure.kind``)."""
    if isinstance(exc, UpstreamFailure):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    return "unreachable"


def _reason(exc: BaseException) -> str:
    """A failure's own short text (UpstreamFailure messages hold no URL or header), else its
    type: OSError texts may quote addresses."""
    return str(exc) if isinstance(exc, UpstreamFailure) else type(exc).__name__


async def read_bounded(
    request: Request, limit: int, timeout: float | None = None, already: int = 0
) -> bytes:
    """The whole body (what is left of it after ``already`` bytes were read), at most
    ``limit`` bytes (``PayloadTooLarge``), each read within ``timeout`` seconds
    (``RequestTimeout``: a client too slow to send)."""
    length = request.content_length
    if length is not None and length - already > limit:
        raise PayloadTooLarge(f"request body exceeds {limit + already} bytes")
    if not request.body_exists:
        return b""
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(request, timeout):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit + already} bytes")
        parts.append(chunk)
    return b"".join(parts)


class _BodyRejected(Exception):
    def __init__(self, error: ProxyError) -> None:
        super().__init__(error.message)
        self.error = error


class _BodyState:
    """A streamed body's checks: the SHA-256 the signature claims, and the size bound.

    ``error`` is set when the stream was cut on purpose, so the caller can answer with it.
    """

    def __init__(
        self, expected_sha256: str | None, limit: int, length: int | None, timeout: float | None
    ) -> None:
        self.expected = expected_sha256.lower() if expected_sha256 else None
        self.digest = hashlib.sha256() if expected_sha256 else None
        self.limit = limit if length is None else None
        self.timeout = timeout
        self.error: ProxyError | None = None

    def fail(self, error: ProxyError) -> _BodyRejected:
        self.error = error
        return _BodyRejected(error)


def _transformer(
    auth: ParsedAuth | None, transformer: BodyTransformer | None
) -> BodyTransformer | None:
    """The signer's chunk re-signer for a STREAMING body.  Raises ``MalformedSignature`` when
    there is none: its chunks would reach the upstream signed with the proxy key."""
    if auth is None or auth.body is not BodyPolicy.STREAMING:
        return None
    if transformer is None:
        raise MalformedSignature("this chunk-signed body cannot be re-signed")
    return transformer


async def _transform(
    chunks: AsyncIterator[bytes], transformer: BodyTransformer, state: _BodyState
) -> AsyncIterator[bytes]:
    """Pipe the body through ``transformer``; a chunk that fails cuts the upstream request
    before its end (the transformer holds the end back until everything verified)."""
    try:
        async for chunk in chunks:
            out = transformer.feed(chunk)
            if out:
                yield out
        out = transformer.finish()
    except (SignatureMismatch, MalformedSignature) as exc:
        raise state.fail(exc) from None
    if out:
        yield out


async def _stream_body(request: Request, state: _BodyState) -> AsyncIterator[bytes]:
    """Yield the inbound body; on a hash mismatch raise before the last chunk is sent, so the
    upstream never receives a complete request."""
    size = 0
    pending: bytes | None = None
    async for chunk in body_chunks(request, state.timeout):
        size += len(chunk)
        if state.limit is not None and size > state.limit:
            raise state.fail(PayloadTooLarge(f"request body exceeds {state.limit} bytes"))
        if state.digest is not None:
            state.digest.update(chunk)
        if pending is not None:
            yield pending
        pending = chunk
    expected = state.expected
    digest = state.digest.hexdigest() if state.digest is not None else None
    if digest is not None and expected is not None and not constant_time_equal(digest, expected):
        raise state.fail(SignatureMismatch("the body does not match the signed payload hash"))
    if pending is not None:
        yield pending
