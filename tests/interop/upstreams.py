"""The upstreams of the interop matrix, each in front of the same moto (which checks the
SigV4 signature keybroker made with the real key, so each passes the Host header on):

- ``aiohttp``: an aiohttp server (keep-alive 75 s) relaying to moto;
- ``nginx``: nginx proxying to moto over pooled HTTP/1.1 connections;
- ``raw-close`` and ``raw-chunked``: :class:`FramingServer`, a raw-socket relay that frames
  every answer on purpose (see its docstring).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port, port_open, running

__all__ = ["FramingServer", "aiohttp_relay", "have_nginx", "nginx_relay"]

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class FramingServer:
    """A raw-socket HTTP/1.1 relay to moto whose answers exercise framing on purpose.

    ``close`` mode: every answer says ``Connection: close`` and the connection closes after
    it; bodies are close-delimited (no length, no chunks); HEAD, 204 and 304 answers carry
    ``Connection: close`` too.

    ``chunked`` mode: keep-alive; every body goes chunked in uneven chunks with a trailer;
    HEAD, 204 and 304 without close; a ``100 Continue`` before every request body is read
    (asked for or not); an idle connection is closed after ``idle`` seconds (a keep-alive
    timeout far below keybroker's pool retirement); a PUT to a key named ``early-4xx`` is
    refused with a 403 before its body is read (then the connection closes, lingering).
    """

    def __init__(self, target_port: int, mode: str, idle: float = 1.0) -> None:
        self.target_port = target_port
        self.mode = mode
        self.idle = idle
        self.connections = 0
        self.idle_closes = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"raw-{mode}")

    def __enter__(self) -> FramingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        moto = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
        rfile = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                conn.settimeout(self.idle if self.mode == "chunked" else 30)
                try:
                    line = rfile.readline(65537)
                except TimeoutError:
                    self.idle_closes += 1
                    return
                if not line:
                    return
                conn.settimeout(30)
                if not self._one(conn, rfile, line, moto):
                    return
        except (OSError, ValueError, http.client.HTTPException):
            return
        finally:
            moto.close()
            rfile.close()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()

    def _one(
        self, conn: socket.socket, rfile: object, line: bytes, moto: http.client.HTTPConnection
    ) -> bool:
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            h = rfile.readline(65537)  # type: ignore[attr-defined]
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        low = {k.lower(): v for k, v in headers}
        chunked = "chunked" in low.get("transfer-encoding", "").lower()
        length = int(low.get("content-length", "0") or 0)
        if (
            method == "PUT"
            and target.split("?")[0].endswith("/early-4xx")
            and self.mode == "chunked"
        ):
            body = b"<Error><Code>AccessDenied</Code><Message>early</Message></Error>"
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            _linger(conn)
            return False
        if (chunked or length) and self.mode == "chunked":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _read_chunked(rfile) if chunked else rfile.read(length)  # type: ignore[attr-defined]
        send_headers = {k: v for k, v in headers if k.lower() not in _HOP and k.lower() != "expect"}
        if chunked:
            send_headers["Content-Length"] = str(len(body))
        elif length:
            send_headers["Content-Length"] = str(length)
        moto.request(method, target, body=body or None, headers=send_headers)
        resp = moto.getresponse()
        data = resp.read()
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        no_body = method == "HEAD" or resp.status in (204, 304)
        head = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        head += [f"{k}: {v}" for k, v in out_headers]
        if no_body and method == "HEAD" and resp.getheader("content-length") is not None:
            head.append(f"Content-Length: {resp.getheader('content-length')}")
        if self.mode == "close":
            head.append("Connection: close")
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if not no_body:
                conn.sendall(data)  # close-delimited: the end of the body is the close
            return False
        if no_body:
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            return True
        head += ["Transfer-Encoding: chunked", "Trailer: X-Interop-Length"]
        parts = [("\r\n".join(head) + "\r\n\r\n").encode("latin-1")]
        pos, step = 0, 1
        while pos < len(data):
            piece = data[pos : pos + step]
            parts.append(b"%x;ext=1\r\n%b\r\n" % (len(piece), piece))
            pos += len(piece)
            step = 65536 + 7 if step > 1 else 3
        parts.append(b"0\r\nX-Interop-Length: %d\r\n\r\n" % len(data))
        conn.sendall(b"".join(parts))
        return True


def _read_chunked(rfile: object) -> bytes:
    out = bytearray()
    while True:
        size = int(rfile.readline(1024).split(b";")[0].strip(), 16)  # type: ignore[attr-defined]
        if not size:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # type: ignore[attr-defined]
                pass
            return bytes(out)
        out += rfile.read(size)  # type: ignore[attr-defined]
        rfile.readline(3)  # type: ignore[attr-defined]


def _linger(conn: socket.socket) -> None:
    """Close without losing the answer: stop writing, read (and drop) what the client still
    sends for a moment, then close (as servers' lingering close does)."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2.0)
        while conn.recv(65536):
            pass


@contextlib.contextmanager
def aiohttp_relay(target: str) -> Iterator[str]:
    """An aiohttp server relaying every request to ``target`` (its own process)."""
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *_pp()])}
    with running(
        [sys.executable, "-m", "tests.interop.aiohttp_relay", str(port), target],
        port_open(port),
        env=env,
        what="aiohttp relay",
    ):
        yield f"http://127.0.0.1:{port}"


def _pp() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


_NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  client_max_body_size 0;
  keepalive_timeout 75s;
  upstream moto {{ server 127.0.0.1:{moto_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://moto;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx_relay(moto_port: int, prefix: Path) -> Iterator[str]:
    """nginx in front of moto, keep-alive on both sides."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, prefix=prefix, moto_port=moto_port, port=port))
    with running([nginx, "-c", str(conf), "-p", str(prefix)], port_open(port), what="nginx"):
        yield f"http://127.0.0.1:{port}"


def have_nginx() -> bool:
    return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
