"""``keybroker try``: send one correctly signed, harmless request through a running keybroker.

::

    keybroker try [--config PATH] [--account NAME] [--mode native|keyproxy] [--curl]

The request (a "who am I" call of the account's vendor, see :mod:`keybroker.signers.samples`)
is signed with the account's *proxy* credential, as the platform would sign it, and sent to the
proxy at ``Http.Address`` (``--url`` to override): natively (signed for the proxy's own
address, as an SDK whose endpoint is keybroker) or in key-proxy mode (signed for the vendor's
URL, sent with the ``X-Mcdn-*`` headers).  The answer's status, time and start are printed;
for a refusal by keybroker, its error code and what to check.  ``--curl`` prints the same
request as a curl command instead of sending it — the exact headers a platform developer must
send.  Exit status: 0 for a 2xx/3xx answer, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import re
import shlex
import ssl
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from keybroker.errors import ConfigError
from keybroker.settings import Config, Endpoint, address_host, all_interfaces
from keybroker.signers.base import SigningRequest
from keybroker.signers.samples import Sample, signed_sample

__all__ = ["add_try_parser", "cmd_try"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SHOWN_BYTES = 600

#: what to check, by keybroker's own error code
HINTS = {
    "Proxy.CloudAccountNotFound": "the account is not in the running server's config: "
    "reload it (kill -HUP) or check --account",
    "Proxy.ValidateCredentialErr": "the running server has another proxy credential for "
    "this account than this config file: reload it",
    "Proxy.RequestExpired": "the clocks of this machine and the server differ",
    "Proxy.Forbidden": "the account's Policy or the client allow-lists refuse this request",
    "Proxy.NetworkErr": "keybroker could not reach the vendor (DNS, firewall, proxy): "
    "the path up to keybroker works",
    "Proxy.Replay": "this exact request was already sent: run try again",
}


class _UsageError(Exception):
    """Bad arguments or config; the message is printed as is (it holds no secret)."""


def add_try_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``try`` command to an ``argparse`` sub-parser group."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "try", help="send one signed test request for an account through a running keybroker"
    )
    parser.add_argument("--config", "-c", default="./config.yml", metavar="PATH")
    parser.add_argument("--account", metavar="NAME", help="CloudAccountName (default: the first)")
    parser.add_argument(
        "--mode", choices=("native", "keyproxy"), default="native", help="how to address it"
    )
    parser.add_argument("--url", help="the proxy's base URL (default: from Http.Address)")
    parser.add_argument("--cacert", metavar="FILE", help="CA file for a TLS listener")
    parser.add_argument(
        "--curl", action="store_true", help="print the request as a curl command, do not send"
    )
    parser.set_defaults(handler=cmd_try)
    return parser


def cmd_try(args: argparse.Namespace) -> int:
    try:
        return _try(args)
    except _UsageError as exc:
        print(f"keybroker try: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _try(args: argparse.Namespace) -> int:
    config = _load(args.config)
    endpoint = _account(config, args.account)
    base = args.url or proxy_url(config)
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _UsageError(f"--url must be http(s)://host:port, got {base!r}")
    now = datetime.now(UTC)
    try:
        if args.mode == "native":
            sample, req = signed_sample(
                endpoint.vendor, endpoint.proxy, now, host=parts.netloc, scheme=parts.scheme
            )
        else:
            sample, req = signed_sample(endpoint.vendor, endpoint.proxy, now)
    except KeyError as exc:
        raise _UsageError(str(exc.args[0])) from None
    headers = _wire_headers(req, sample, endpoint, args.mode)
    target = req.path + (f"?{req.query}" if req.query else "")
    if args.curl:
        print(_curl(base, target, req.method, headers, sample.body))
        return EXIT_OK
    print(f"-> {req.method} {base}{target}  [{endpoint.cloud_account_name}, {args.mode} mode]")
    print(f"   {sample.description}")
    return _send(parts, req.method, target, headers, sample.body, args.cacert)


def proxy_url(config: Config) -> str:
    """Where a local client reaches the proxy: ``Http.Address`` (the TLS address when TLS is
    on), with an all-interfaces host replaced by the loopback address."""
    tls = config.http.tls.enabled
    address = config.http.serving_address
    host, port = address_host(address), address.rpartition(":")[2]
    if all_interfaces(address):  # a local client uses loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _load(path: str) -> Config:
    from keybroker.config.loader import load

    try:
        return load(path)
    except ConfigError as exc:
        raise _UsageError(f"{path}: invalid config: {'; '.join(exc.problems)}") from None


def _account(config: Config, name: str | None) -> Endpoint:
    if not config.endpoints:
        raise _UsageError("the config has no Endpoints")
    if name is None:
        return config.endpoints[0]
    for endpoint in config.endpoints:
        if endpoint.cloud_account_name == name:
            return endpoint
    names = ", ".join(e.cloud_account_name for e in config.endpoints)
    raise _UsageError(f"no account {name!r} in the config (have: {names})")


def _wire_headers(
    req: SigningRequest, sample: Sample, endpoint: Endpoint, mode: str
) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in req.headers.items() if k.lower() != "host"]
    if mode == "keyproxy":
        origin = f"https://{sample.host}{req.path}" + (f"?{req.query}" if req.query else "")
        kept = ",".join(k.lower() for k, _ in headers)
        headers += [
            ("X-Mcdn-Origin-Uri", origin),
            ("X-Mcdn-Cloud-Account-Name", endpoint.cloud_account_name),
            ("X-Mcdn-Kept-Headers", kept),
            ("X-Origin-Host", sample.host),
        ]
    return headers


def _curl(base: str, target: str, method: str, headers: list[tuple[str, str]], body: bytes) -> str:
    words = ["curl", "-sS", "-X", method]
    for name, value in headers:
        words += ["-H", f"{name}: {value}"]
    if body:
        words += ["--data-binary", body.decode("utf-8")]
    words.append(base + target)
    return " ".join(shlex.quote(w) for w in words) + "   # valid for the clock-skew window"


def _send(
    url: SplitResult,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    cacert: str | None,
) -> int:
    netloc = url.netloc
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=cacert)
        conn = http.client.HTTPSConnection(netloc, timeout=60, context=ctx)
    else:
        conn = http.client.HTTPConnection(netloc, timeout=60)
    started = time.monotonic()
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        print(f"<- no answer from {netloc}: {exc} (is keybroker serve running there?)")
        return EXIT_FAILED
    finally:
        conn.close()
    ms = (time.monotonic() - started) * 1000
    print(f"<- {resp.status} {resp.reason} in {ms:.0f} ms")
    if resp.getheader("X-Mcdn-Proxy-Status") == "Failed":
        _explain(body)
    else:
        print("   answered by the vendor (signed with the real credential):")
        text = body[:_SHOWN_BYTES].decode("utf-8", "replace")
        print("   " + text.replace("\n", "\n   ") + ("..." if len(body) > _SHOWN_BYTES else ""))
    return EXIT_OK if resp.status < 400 else EXIT_FAILED


_CODE = re.compile(r"Proxy\.[A-Za-z]+")
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)


def _explain(body: bytes) -> None:
    """keybroker's refusal: key-proxy's JSON, or (native mode) the vendor's error shape with
    keybroker's ``Proxy.*`` code in it."""
    text = body.decode("utf-8", "replace")
    code_found = _CODE.search(text)
    if code_found is None:
        print("   refused by keybroker (no error code in the answer)")
        return
    code = code_found.group(0)
    print(f"   refused by keybroker: {code}: {_message(text)}")
    hint = HINTS.get(code)
    if hint:
        print(f"   check: {hint}")


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        found = _XML_MESSAGE.search(text)
        return html.unescape(found.group(1)) if found else ""
    for path in (("ResponseMetadata", "Error", "Message"), ("message",), ("Message",)):
        node: Any = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return node
    return ""
