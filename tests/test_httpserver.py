"""The proxy's HTTP/1.1 server (keybroker.http.server) over real sockets: framing, keep-alive,
pipelining, bodies, 100-continue, limits and malformed input."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.errors import MalformedRequest
from keybroker.http.messages import Request, Response, StreamResponse, json_response
from keybroker.http.server import HttpServer


async def _echo(request: Request) -> StreamResponse:
    """Answers with the method, path, body length and a few headers it saw."""
    if request.path == "/stream":
        resp = StreamResponse(status=200)
        await resp.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await resp.write(part)
        await resp.write_eof()
        return resp
    if request.path == "/ignore-body":
        return Response(text="not read")
    if request.path == "/slow":
        await asyncio.sleep(30)
    body = b""
    request.send_continue()  # the body is wanted: answer Expect: 100-continue
    try:
        while chunk := await request.content.read(7):
            body += chunk
    except MalformedRequest as exc:
        return Response(text=exc.message, status=400)
    return json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "raw_path": request.raw_path,
            "length": len(body),
            "body": body.decode("latin-1"),
            "declared": request.content_length,
            "exists": request.body_exists,
            "x": request.headers.getall("x-thing", []),
            "remote": request.remote,
        }
    )


class _Server:
    def __init__(self, server: HttpServer, port: int) -> None:
        self.server, self.port = server, port

    async def raw(self, data: bytes, *, wait: float = 2.0) -> bytes:
        """Send ``data`` on a new connection and read until the server closes it (or
        ``wait`` seconds of silence)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        out = b""
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), wait)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        writer.close()
        return out


async def _serve(handler=_echo, **kw) -> AsyncIterator[_Server]:  # type: ignore[no-untyped-def]
    server = HttpServer(
        handler, max_head_bytes=kw.pop("max_head", 8192), header_timeout=kw.pop("hto", 5.0)
    )
    await server.listen(host="127.0.0.1", port=0)
    try:
        yield _Server(server, server.ports[0])
    finally:
        await server.close()


def run(coro_fn, **kw):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        gen = _serve(**kw)
        srv = await gen.__anext__()
        try:
            return await coro_fn(srv)
        finally:
            await gen.aclose()

    return asyncio.run(main())


def _answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 answers (Content-Length or chunked framed)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                body += rest[:size]
                rest = rest[size + 2 :]
                if size == 0:
                    break
            data = rest
        else:
            body, data = rest, b""
        out.append((status, headers, body))
    return out


@pytest.mark.slow
def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async def go(s: _Server) -> bytes:
        reqs = b"".join(
            b"GET /p%d?q=%d HTTP/1.1\r\nHost: x\r\nX-Thing: %d\r\n\r\n" % (i, i, i)
            for i in range(5)
        )
        return await s.raw(reqs, wait=0.5)

    answers = _answers(run(go))
    assert [a[0] for a in answers] == [200] * 5
    import json

    bodies = [json.loads(a[2]) for a in answers]
    assert [b["path"] for b in bodies] == [f"/p{i}" for i in range(5)]
    assert [b["query"] for b in bodies] == [f"q={i}" for i in range(5)]
    assert [b["x"] for b in bodies] == [[str(i)] for i in range(5)]
    assert all(a[1].get("connection") != "close" for a in answers)
    assert bodies[0]["remote"] == "127.0.0.1"


@pytest.mark.slow
def test_fixed_and_chunked_request_bodies() -> None:
    import json

    async def go(s: _Server) -> bytes:
        fixed = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
        chunked = (
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        return await s.raw(fixed + chunked, wait=0.5)

    (s1, _, b1), (s2, _, b2) = _answers(run(go))
    one, two = json.loads(b1), json.loads(b2)
    assert (s1, one["body"], one["declared"], one["exists"]) == (200, "hello world", 11, True)
    assert (s2, two["body"], two["declared"], two["exists"]) == (200, "hello world", None, True)


@pytest.mark.slow
def test_streamed_answer_is_chunked_and_head_has_no_body() -> None:
    async def go(s: _Server) -> tuple[bytes, bytes]:
        a = await s.raw(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", wait=0.5)
        b = await s.raw(b"GET /stream HTTP/1.0\r\n\r\n", wait=0.5)
        return a, b

    a, b = run(go)
    ((status, headers, body),) = _answers(a)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert body == b"one,two,three"
    # HTTP/1.0 has no chunked encoding: the end of the connection ends the body
    assert b"transfer-encoding" not in b.lower() and b.endswith(b"one,two,three")
    assert b"connection: close" in b.lower()


def test_malformed_requests_get_400_and_close() -> None:
    cases = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]

    async def go(s: _Server) -> list[bytes]:
        return [await s.raw(c) for c in cases]

    for out in run(go):
        assert out.startswith(b"HTTP/1.1 400 "), out
        assert b"connection: close" in out.lower()


def test_oversized_head_is_431() -> None:
    async def go(s: _Server) -> bytes:
        return await s.raw(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")

    assert run(go, max_head=4096).startswith(b"HTTP/1.1 431 ")


def test_slow_head_is_408() -> None:
    async def go(s: _Server) -> bytes:
        return await s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n", wait=3)

    assert run(go, hto=0.3).startswith(b"HTTP/1.1 408 ")


def test_unread_body_closes_connection_after_answer() -> None:
    async def go(s: _Server) -> bytes:
        # the body never arrives whole: the answer must not wait for it, and the connection
        # cannot carry another request
        return await s.raw(
            b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", wait=1
        )

    out = run(go)
    ((status, headers, body),) = _answers(out)
    assert status == 200 and body == b"not read" and headers["connection"] == "close"


def test_expect_continue_sent_only_when_body_read() -> None:
    async def go(s: _Server) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(
            b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        )
        await writer.drain()
        first = b""
        while b"\r\n\r\n" not in first:
            first += await asyncio.wait_for(reader.read(100), 2)
        # an /ignore-body answer comes without any 100 Continue
        writer2_reader, writer2 = await asyncio.open_connection("127.0.0.1", s.port)
        writer2.write(
            b"PUT /ignore-body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 3\r\n\r\n"
        )
        second = await asyncio.wait_for(writer2_reader.read(1000), 2)
        writer.write(b"abc")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(1000), 2)
        writer.close()
        writer2.close()
        return first + rest, second

    first, second = run(go)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert b'"body": "abc"' in first
    assert second.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in second


def test_client_gone_cancels_handler() -> None:
    cancelled = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(text="late")

    async def go(s: _Server) -> bool:
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.2)
        sock.close()
        await asyncio.wait_for(cancelled.wait(), 3)
        return cancelled.is_set()

    assert run(go, handler=handler)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzzed_bytes_never_crash_the_server(data: bytes) -> None:
    """Any bytes after a valid start: every answer is a well-formed 2xx/4xx, never 5xx."""

    async def go(s: _Server) -> bytes:
        return await s.raw(b"POST /x HTTP/1.1\r\n" + data, wait=0.3)

    out = run(go, hto=0.2)
    for line in out.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            status = int(line.split()[1])
            assert status < 500, out
