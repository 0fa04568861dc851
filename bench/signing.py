"""Pre-signed requests, as a platform sends them to key-proxy (``X-Mcdn-*`` headers), signed
with the vendors' own SDKs: botocore for AWS SigV4, ``volcenginesdkcore`` for Volcengine.

Every request is unique (AWS: a ``Nonce`` query parameter; Volcengine: an ``Offset`` in the
JSON body), because the replay cache refuses a signed request seen before.  The result is raw
HTTP/1.1 bytes, ready for wrk or a socket.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from volcenginesdkcore.signv4 import SignerV4

__all__ = [
    "Accounts",
    "aws_get",
    "aws_post",
    "raw_request",
    "s3_download",
    "s3_upload",
    "volc_post",
    "with_host",
]

AWS_ORIGIN = "https://sts.amazonaws.com"
S3_ORIGIN = "https://bench-bucket.s3.us-east-1.amazonaws.com"
VOLC_HOST = "open.volcengineapi.com"
AWS_KEPT = "authorization,x-amz-date"
S3_KEPT = "authorization,x-amz-date,x-amz-content-sha256"
VOLC_KEPT = "authorization,x-date,content-type,x-content-sha256"


def _key(prefix: str) -> str:
    return prefix + secrets.token_hex(8).upper()


@dataclass(frozen=True)
class Accounts:
    """Throw-away proxy and real credentials for one benchmark run (never printed)."""

    aws_proxy: tuple[str, str] = field(
        default_factory=lambda: (_key("AKIDBENCH"), secrets.token_urlsafe(30))
    )
    aws_real: tuple[str, str] = field(
        default_factory=lambda: (_key("AKIAREAL"), secrets.token_urlsafe(30))
    )
    s3_proxy: tuple[str, str] = field(
        default_factory=lambda: (_key("AKIDBENCHS3"), secrets.token_urlsafe(30))
    )
    s3_real: tuple[str, str] = field(
        default_factory=lambda: (_key("AKIAREALS3"), secrets.token_urlsafe(30))
    )
    volc_proxy: tuple[str, str] = field(
        default_factory=lambda: (_key("AKLTBENCH"), secrets.token_urlsafe(30))
    )
    volc_real: tuple[str, str] = field(
        default_factory=lambda: (_key("AKLTREAL"), secrets.token_urlsafe(30))
    )


def raw_request(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    length: int | None = None,
) -> bytes:
    """HTTP/1.1 request bytes; ``Host`` is left to the sender (see :func:`with_host`).
    ``length`` announces a body that the caller streams after these bytes."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is None and (body or method in ("POST", "PUT")):
        length = len(body)
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def with_host(raw: bytes, port: int) -> bytes:
    """Insert ``Host: 127.0.0.1:port`` after the request line."""
    line_end = raw.index(b"\r\n") + 2
    return raw[:line_end] + b"Host: 127.0.0.1:%d\r\n" % port + raw[line_end:]


def _keyproxy(origin_uri: str, account: str, kept: str) -> list[tuple[str, str]]:
    return [
        ("X-Mcdn-Origin-Uri", origin_uri),
        ("X-Mcdn-Cloud-Account-Name", account),
        ("X-Mcdn-Kept-Headers", kept),
    ]


def aws_get(accounts: Accounts, n: int, start: int = 0) -> list[bytes]:
    """``n`` GetCallerIdentity-like GETs signed with SigV4 (sts, us-east-1)."""
    creds = Credentials(*accounts.aws_proxy)
    out = []
    for i in range(start, start + n):
        query = f"/?Action=GetCallerIdentity&Version=2011-06-15&Nonce={i}"
        req = AWSRequest(method="GET", url=AWS_ORIGIN + query)
        SigV4Auth(creds, "sts", "us-east-1").add_auth(req)
        headers = [(k, str(v)) for k, v in req.headers.items()]
        headers += _keyproxy(AWS_ORIGIN + query, "aws-bench", AWS_KEPT)
        out.append(raw_request("GET", query, headers))
    return out


def aws_post(
    accounts: Accounts, n: int, start: int = 0, *, pad: int = 0, path: str = "/"
) -> list[bytes]:
    """``n`` form POSTs to STS (at ``path``) with a ``pad``-byte parameter, SigV4-signed
    without an ``x-amz-content-sha256`` header: the proxy must hold the whole body to verify
    it."""
    creds = Credentials(*accounts.aws_proxy)
    filler = "x" * pad
    out = []
    for i in range(start, start + n):
        body = f"Action=GetCallerIdentity&Version=2011-06-15&Nonce={i}&Pad={filler}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        req = AWSRequest(method="POST", url=AWS_ORIGIN + path, data=body, headers=headers)
        SigV4Auth(creds, "sts", "us-east-1").add_auth(req)
        pairs = [(k, str(v)) for k, v in req.headers.items()]
        pairs += _keyproxy(AWS_ORIGIN + path, "aws-bench", AWS_KEPT + ",content-type")
        out.append(raw_request("POST", path, pairs, body))
    return out


def volc_post(
    accounts: Accounts,
    n: int,
    start: int = 0,
    *,
    pad: int = 0,
    kept: str = VOLC_KEPT,
    path: str = "/",
) -> list[bytes]:
    """``n`` IAM ListUsers POSTs (JSON body, ``pad`` extra bytes in it; to ``path``) signed
    as the Volcengine SDK signs them, sent as key-proxy's platform sends them."""
    ak, sk = accounts.volc_proxy
    query = [("Action", "ListUsers"), ("Version", "2018-01-01")]
    target = f"{path}?Action=ListUsers&Version=2018-01-01"
    filler = "x" * pad
    out = []
    for i in range(start, start + n):
        body = (
            f'{{"Limit":1,"Offset":{i},"Pad":"{filler}"}}' if pad else f'{{"Limit":1,"Offset":{i}}}'
        )
        headers = {"Content-Type": "application/json", "Host": VOLC_HOST}
        SignerV4.sign(path, "POST", headers, body, None, query, ak, sk, "cn-beijing", "iam", None)
        headers.pop("Host")
        pairs = list(headers.items()) + _keyproxy(
            f"https://{VOLC_HOST}{target}", "volc-bench", kept
        )
        out.append(raw_request("POST", target, pairs, body.encode()))
    return out


def _s3(accounts: Accounts, method: str, path: str, payload_sha256: str) -> list[tuple[str, str]]:
    req = AWSRequest(method=method, url=S3_ORIGIN + path)
    # plain SigV4 signs the payload hash given in this header (S3SigV4Auth would replace
    # it with the hash of the empty body it is handed: the real body is streamed later)
    req.headers["X-Amz-Content-SHA256"] = payload_sha256
    SigV4Auth(Credentials(*accounts.s3_proxy), "s3", "us-east-1").add_auth(req)
    headers = [(k, str(v)) for k, v in req.headers.items()]
    return headers + _keyproxy(S3_ORIGIN + path, "s3-bench", S3_KEPT)


def s3_upload(accounts: Accounts, blocks: list[bytes], repeat: int) -> bytes:
    """The head of a PUT whose body is ``blocks`` sent ``repeat`` times, signed with the
    body's SHA-256 in ``x-amz-content-sha256`` (the proxy checks it while streaming)."""
    digest = hashlib.sha256()
    for _ in range(repeat):
        for block in blocks:
            digest.update(block)
    size = repeat * sum(len(b) for b in blocks)
    path = f"/upload-{secrets.token_hex(4)}"
    headers = _s3(accounts, "PUT", path, digest.hexdigest())
    return raw_request("PUT", path, headers, length=size)


def s3_download(accounts: Accounts, size: int) -> bytes:
    """A signed GET of ``size`` bytes (the upstream streams ``/big/<size>``)."""
    path = f"/big/{size}?n={secrets.token_hex(4)}"
    empty = hashlib.sha256(b"").hexdigest()
    return raw_request("GET", path, _s3(accounts, "GET", path, empty))
