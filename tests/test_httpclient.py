"""The proxy's upstream client (keybroker.http.client) against real sockets: small raw asyncio
servers that answer exactly the bytes each case needs (keep-alive, close-delimited, chunked,
1xx, HEAD, a server that drops pooled connections, one that never answers)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.http.client import IDLE_SECONDS, UpstreamClient
from keybroker.http.netguard import DestinationRefused, GuardedResolver
from keybroker.http.upstream import UpstreamFailure
from tests.kms.tls_ca import TestCA

Answer = Callable[[bytes], bytes | None]


class RawUpstream:
    """Reads one request head (and a Content-Length body) at a time; answers with
    ``answer(request_bytes)``; ``None`` closes the connection without a word."""

    def __init__(
        self, answer: Answer, *, close_after: bool = False, hold_open: bool = False
    ) -> None:
        self.answer = answer
        self.close_after = close_after
        #: after an answer saying ``Connection: close``, read nothing more but keep the socket
        #: open (a client that reuses it waits for an answer that never comes)
        self.hold_open = hold_open
        self.connections = 0
        self.requests: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                chunked = False
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    if name.lower() == b"transfer-encoding":
                        chunked = True
                body = await reader.readexactly(length) if length else b""
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if not size:
                            break
                self.requests.append(head + body)
                out = self.answer(head + body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    break
                if _says_close(out):
                    if self.hold_open:
                        await asyncio.sleep(3600)
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        writer.close()
        self.tasks.discard(task)


def _says_close(answer: bytes) -> bool:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    if head.startswith(b"http/1.0") and b"keep-alive" not in head:
        return True
    return any(line.startswith(b"connection:") and b"close" in line for line in head.split(b"\r\n"))


async def _client(**kw: float) -> UpstreamClient:
    resolver = GuardedResolver()
    resolver.trust({"127.0.0.1"})
    return UpstreamClient(
        resolver, connect_timeout=kw.get("connect", 2.0), read_timeout=kw.get("read", 2.0)
    )


async def _with(
    upstream: RawUpstream, fn: Callable[[UpstreamClient, str], Awaitable[object]], **kw: float
) -> object:
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await _client(**kw)
    try:
        return await fn(client, f"127.0.0.1:{port}")
    finally:
        await client.close()
        server.close()
        for task in list(upstream.tasks):
            task.cancel()
        await asyncio.sleep(0.01)


async def _get(client: UpstreamClient, host: str, method: str = "GET", body=None):  # type: ignore[no-untyped-def]
    headers = CIMultiDict({"Host": host})
    if isinstance(body, bytes):
        headers["Content-Length"] = str(len(body))
    resp = await client.request(method, "http", host, "/x?y=1", headers, body)
    async with resp:
        data = b"".join([c async for c in resp.chunks()])
    return resp.status, resp.headers, data


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_keep_alive_connection_is_reused() -> None:
    up = RawUpstream(lambda req: OK)

    async def go(client: UpstreamClient, host: str) -> list[object]:
        return [await _get(client, host) for _ in range(5)]

    results = asyncio.run(_with(up, go))
    assert [r[0] for r in results] == [200] * 5  # type: ignore[index, union-attr]
    assert [r[2] for r in results] == [b"hello"] * 5  # type: ignore[index, union-attr]
    assert up.connections == 1
    assert up.requests[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")


def test_server_closing_pooled_connection_is_retried_for_replayable_bodies() -> None:
    up = RawUpstream(lambda req: OK, close_after=True)  # closes after every answer, silently

    async def go(client: UpstreamClient, host: str) -> list[object]:
        out = []
        for i in range(4):
            out.append(await _get(client, host, "POST", b"body%d" % i))
            await asyncio.sleep(0.05)
        return out

    results = asyncio.run(_with(up, go))
    assert [r[2] for r in results] == [b"hello"] * 4  # type: ignore[index, union-attr]
    assert up.connections == 4
    assert [r.split(b"\r\n\r\n")[1] for r in up.requests] == [
        b"body0",
        b"body1",
        b"body2",
        b"body3",
    ]


def test_chunked_answer_then_close_delimited_answer() -> None:
    chunked = RawUpstream(
        lambda req: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
    )
    # no length, no chunks: the body ends when the server closes the connection
    delimited = RawUpstream(lambda req: b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close_after=True)

    async def go(client: UpstreamClient, host: str) -> object:
        return [await _get(client, host), await _get(client, host)]

    (a, b) = asyncio.run(_with(chunked, go))  # type: ignore[misc]
    assert (a[0], a[2], b[2]) == (200, b"abcde", b"abcde") and chunked.connections == 1
    (c, d) = asyncio.run(_with(delimited, go))  # type: ignore[misc]
    assert (c[0], c[2], d[2]) == (200, b"until the end", b"until the end")
    assert delimited.connections == 2  # a close-delimited answer's connection is not reused


def test_informational_answer_is_skipped_and_head_has_no_body() -> None:
    def answer(req: bytes) -> bytes:
        if req.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        return b"HTTP/1.1 100 Continue\r\n\r\n" + OK

    up = RawUpstream(answer)

    async def go(client: UpstreamClient, host: str) -> list[object]:
        return [
            await _get(client, host),
            await _get(client, host, "HEAD"),
            await _get(client, host),
        ]

    (a, b, c) = asyncio.run(_with(up, go))  # type: ignore[misc]
    assert a[0] == 200 and a[2] == b"hello"
    assert b[0] == 200 and b[2] == b"" and b[1]["content-length"] == "1000"
    assert c[2] == b"hello" and up.connections == 1


def test_streamed_body_goes_chunked_and_head_waits_for_first_chunk() -> None:
    up = RawUpstream(lambda req: OK)

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"defg"

    async def failing() -> AsyncIterator[bytes]:
        raise ValueError("refused before the first chunk")
        yield b""  # pragma: no cover

    async def go(client: UpstreamClient, host: str) -> object:
        ok = await client.request("PUT", "http", host, "/s", CIMultiDict({"Host": host}), parts())
        async with ok:
            assert b"".join([c async for c in ok.chunks()]) == b"hello"
        with pytest.raises(ValueError):
            await client.request("PUT", "http", host, "/f", CIMultiDict({"Host": host}), failing())
        await asyncio.sleep(0.1)
        return None

    asyncio.run(_with(up, go))
    assert len(up.requests) == 1  # the refused body's request never reached the server
    assert b"transfer-encoding: chunked" in up.requests[0].lower()
    assert up.requests[0].endswith(b"abcdefg")


def test_silent_upstream_times_out_and_dead_port_fails() -> None:
    up = RawUpstream(lambda req: b"")  # reads the request, never answers

    async def go(client: UpstreamClient, host: str) -> None:
        with pytest.raises(UpstreamFailure, match="timed out"):
            await _get(client, host)
        with pytest.raises(UpstreamFailure, match="refused the connection") as info:
            await client.request("GET", "http", "127.0.0.1:1", "/", CIMultiDict(), None)
        assert info.value.kind == "refused"

    asyncio.run(_with(up, go, read=0.3))


def test_bad_answers_and_targets_fail_cleanly() -> None:
    up = RawUpstream(lambda req: b"NOT HTTP AT ALL\r\n\r\n")

    async def go(client: UpstreamClient, host: str) -> None:
        with pytest.raises(UpstreamFailure, match="not valid HTTP"):
            await _get(client, host)
        with pytest.raises(UpstreamFailure, match="cannot be sent"):
            await client.request("GET", "http", host, "/a b", CIMultiDict(), None)
        with pytest.raises(UpstreamFailure, match="cannot be sent"):
            await client.request("GET", "http", host, "/", CIMultiDict({"X": "a\r\nb"}), None)

    asyncio.run(_with(up, go))


def test_private_address_is_refused_unless_trusted() -> None:
    async def go() -> None:
        client = UpstreamClient(GuardedResolver(), connect_timeout=2, read_timeout=2)
        try:
            with pytest.raises(DestinationRefused):
                await client.request("GET", "http", "127.0.0.1:9", "/", CIMultiDict(), None)
        finally:
            await client.close()

    asyncio.run(go())


# ---- the pool: an answer without a body still ends the connection when the server says so

_CLOSE_SPELLINGS = st.sampled_from(
    [
        b"Connection: close\r\n",
        b"connection: Close\r\n",
        b"CONNECTION: CLOSE\r\n",
        b"Connection: keep-alive, close\r\n",
        b"Connection: x-foo\r\nConnection: close\r\n",
        b"Connection:close\r\n",
        b"Connection: \tclose \r\n",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# found by this test: llhttp keeps an HTTP/1.0 connection whose answer says "keep-alive, close"
@pytest.mark.slow
@example(kind="GET", close=b"Connection: keep-alive, close\r\n", version=b"1.0", length=b"")
@given(
    kind=st.sampled_from(["HEAD", "204", "304", "GET"]),
    close=_CLOSE_SPELLINGS,
    version=st.sampled_from([b"1.1", b"1.0"]),
    length=st.sampled_from([b"", b"Content-Length: 0\r\n", b"Content-Length: 1000\r\n"]),
)
def test_answer_saying_close_never_goes_back_to_the_pool(
    kind: str, close: bytes, version: bytes, length: bytes
) -> None:
    """The server says close (any spelling) and keeps the socket open without reading: a
    client that pooled it would wait for an answer that never comes (s3cmd's HEAD then GET
    through moto did, 300 s)."""

    def answer(req: bytes) -> bytes:
        if req.startswith(b"HEAD ") or kind == "GET":
            status = b"200 OK"
        else:
            status = b"204 No Content" if kind == "204" else b"304 Not Modified"
        if not req.startswith((b"GET /first ", b"HEAD /first ")):
            return OK
        if kind == "GET":
            return b"HTTP/%b %b\r\n%bContent-Length: 5\r\n\r\nhello" % (version, status, close)
        return b"HTTP/%b %b\r\n%b%b\r\n" % (version, status, close, length)

    up = RawUpstream(answer, hold_open=True)

    async def go(client: UpstreamClient, host: str) -> list[object]:
        method = "HEAD" if kind == "HEAD" else "GET"
        first = await client.request(method, "http", host, "/first", CIMultiDict(), None)
        async with first:
            body = b"".join([c async for c in first.chunks()])
        return [first.status, body, await _get(client, host)]

    status, body, second = asyncio.run(_with(up, go, read=1.0))  # type: ignore[misc]
    assert status in (200, 204, 304) and body in (b"", b"hello")
    assert second[0] == 200 and second[2] == b"hello"  # type: ignore[index]
    assert up.connections == 2


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["HEAD", "204", "304"]),
    keep=st.sampled_from(
        [b"HTTP/1.1", b"HTTP/1.1 ", b"HTTP/1.0 keep-alive"]  # version, and what says keep-alive
    ),
)
def test_answer_without_body_keeps_a_keep_alive_connection(kind: str, keep: bytes) -> None:
    version, _, alive = keep.partition(b" ")
    extra = b"Connection: keep-alive\r\n" if alive else b""

    def answer(req: bytes) -> bytes:
        if not req.startswith((b"HEAD /first", b"GET /first")):
            return OK
        status = {"HEAD": b"200 OK", "204": b"204 No Content", "304": b"304 Not Modified"}[kind]
        return b"%b %b\r\n%bContent-Length: 7\r\n\r\n" % (version, status, extra)

    up = RawUpstream(answer, hold_open=True)

    async def go(client: UpstreamClient, host: str) -> object:
        method = "HEAD" if kind == "HEAD" else "GET"
        async with await client.request(method, "http", host, "/first", CIMultiDict(), None) as r:
            assert b"".join([c async for c in r.chunks()]) == b""
        return await _get(client, host)

    second = asyncio.run(_with(up, go, read=1.0))
    assert second[2] == b"hello"  # type: ignore[index]
    assert up.connections == 1


def test_idle_pooled_connection_is_retired_before_server_timeouts() -> None:
    """Older than IDLE_SECONDS: closed, a new one made (below nginx/aiohttp 75 s, S3 ~20 s,
    Node.js and Apache 5 s); a server's close already arrived is seen before reuse."""
    assert 1.0 <= IDLE_SECONDS < 5.0
    up = RawUpstream(lambda req: OK)

    async def go(client: UpstreamClient, host: str) -> object:
        await _get(client, host)
        for conns in client._idle.values():
            for conn in conns:
                conn.idle_since -= IDLE_SECONDS
        return await _get(client, host)

    assert asyncio.run(_with(up, go))[2] == b"hello"  # type: ignore[index]
    assert up.connections == 2


def _silent_on_second(req: bytes, seen: list[bytes]) -> bytes | None:
    """Answers the first request; reads the second and closes without a word (the server
    may have acted on it)."""
    seen.append(req)
    return OK if len(seen) % 2 else None


@pytest.mark.parametrize(
    ("method", "body", "resend", "retried"),
    [
        ("GET", None, True, True),
        ("HEAD", None, True, True),
        # a GET the signer does not know to be a read (EC2's ?Action=RunInstances) is sent once
        ("GET", None, False, False),
        ("HEAD", None, False, False),
        ("POST", b"act once", True, False),
        ("PUT", b"version", True, False),
        ("DELETE", None, True, False),
        ("GET", "stream", True, False),
    ],
)
def test_retry_after_a_silent_close_only_when_nothing_can_have_happened(
    method: str, body: object, resend: bool, retried: bool
) -> None:
    seen: list[bytes] = []
    up = RawUpstream(lambda req: _silent_on_second(req, seen))

    async def stream() -> AsyncIterator[bytes]:
        yield b"streamed"

    async def go(client: UpstreamClient, host: str) -> object:
        await _get(client, host)
        data = stream() if body == "stream" else body
        headers = CIMultiDict({"Host": host})
        if isinstance(data, bytes):
            headers["Content-Length"] = str(len(data))
        try:
            resp = await client.request(
                method, "http", host, "/again", headers, data, resend=resend
            )
        except UpstreamFailure:
            return None
        async with resp:
            return resp.status

    status = asyncio.run(_with(up, go))
    sent = [r for r in up.requests if b" /again " in r]
    if retried:
        assert status == 200 and len(sent) == 2
    else:
        assert status is None and len(sent) == 1  # once: the upstream may have acted on it


# ---------------------------------------------------------------------- why a request failed


class _NoSuchName(GuardedResolver):
    """A resolver whose every lookup fails as getaddrinfo does for an unknown name: the
    machine has no DNS to ask, so the failure the client must name is produced here."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list:  # type: ignore[override]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _kind(coro: Awaitable[object]) -> str:
    async def run() -> str:
        with pytest.raises(UpstreamFailure) as info:
            await coro
        return info.value.kind

    return asyncio.run(run())


def test_failure_kinds_name_what_went_wrong(tmp_path: Path) -> None:
    """dns, refused, timeout, protocol, tls and tls-certificate, each from a real socket."""

    async def dns() -> None:
        client = UpstreamClient(_NoSuchName(), connect_timeout=2, read_timeout=2)
        try:
            await client.request("GET", "http", "nowhere.invalid", "/", CIMultiDict(), None)
        finally:
            await client.close()

    assert _kind(dns()) == "dns"

    async def refused() -> None:
        client = await _client()
        try:
            await client.request("GET", "http", "127.0.0.1:1", "/", CIMultiDict(), None)
        finally:
            await client.close()

    assert _kind(refused()) == "refused"

    async def silent(client: UpstreamClient, host: str) -> None:
        await _get(client, host)

    assert _kind(_with(RawUpstream(lambda req: b""), silent, read=0.3)) == "timeout"
    not_http = RawUpstream(lambda req: b"NOT HTTP AT ALL\r\n\r\n")
    assert _kind(_with(not_http, silent)) == "protocol"

    async def plain_http(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def tls_to(server_ssl: ssl.SSLContext | None, trust: Path | None) -> None:
        up = RawUpstream(lambda req: OK)
        handler = up.handle if server_ssl is not None else plain_http
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ssl)
        port = server.sockets[0].getsockname()[1]
        client = await _client()
        if trust is not None:
            client._ssl = ssl.create_default_context(cafile=str(trust))
        try:
            resp = await client.request(
                "GET", "https", f"127.0.0.1:{port}", "/", CIMultiDict(), None
            )
            await resp.__aexit__(None, None, None)
        finally:
            await client.close()
            server.close()

    ca = TestCA.create(tmp_path)
    assert _kind(tls_to(None, ca.ca_path)) == "tls"  # plain HTTP where TLS was expected
    assert _kind(tls_to(ca.server_context(), None)) == "tls-certificate"  # an unknown CA


@pytest.mark.parametrize("kind", ["HEAD", "204", "304"])
def test_body_after_a_bodyless_answer_is_nobodys_answer(kind: str) -> None:
    """A server that sends more after a HEAD/204/304 answer (a body, or what looks like the
    next answer) is out of step: its bytes must never become part of this answer, or the
    next request's."""
    status = {"HEAD": b"200 OK", "204": b"204 No Content", "304": b"304 Not Modified"}[kind]

    def answer(req: bytes) -> bytes:
        if b" /first " not in req.split(b"\r\n")[0]:
            return OK
        head = b"HTTP/1.1 %b\r\nContent-Length: 38\r\n\r\n" % status
        stray = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"[:38]
        return head + stray

    up = RawUpstream(answer)

    async def go(client: UpstreamClient, host: str) -> object:
        method = "HEAD" if kind == "HEAD" else "GET"
        async with await client.request(method, "http", host, "/first", CIMultiDict(), None) as r:
            assert b"".join([c async for c in r.chunks()]) == b""
            assert r.headers.getall("content-length") == ["38"]
        return await _get(client, host)

    second = asyncio.run(_with(up, go, read=1.0))
    assert second[2] == b"hello"  # type: ignore[index]
