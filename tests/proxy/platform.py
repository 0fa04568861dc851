"""A stand-in for a platform built for key-proxy: it signs for the origin URI with botocore
and sends the request to the proxy with the X-Mcdn-* headers."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class Sent:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(self.body)  # type: ignore[no-any-return]


def sign_aws(
    method: str,
    origin_uri: str,
    *,
    ak: str,
    sk: str,
    service: str,
    region: str = "us-east-1",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Sign like boto3 would for ``origin_uri``; returns the signed headers (Host included)."""
    req = AWSRequest(method=method, url=origin_uri, data=body, headers=dict(headers or {}))
    auth_cls = S3SigV4Auth if service == "s3" else SigV4Auth
    auth_cls(Credentials(ak, sk), service, region).add_auth(req)
    out = {k: v for k, v in req.headers.items()}
    out.setdefault("Host", origin_uri.split("/")[2])
    return out


def kept_list(signed: dict[str, str], *, style: str = "plain") -> str:
    names = [k.lower() for k in signed if k.lower() != "host"]
    if style == "spaces":
        return ", ".join(names)
    if style == "upper":
        return ",".join(n.upper() for n in names)
    return ",".join(names)


def send(
    proxy_url: str,
    method: str,
    origin_uri: str,
    signed: dict[str, str],
    *,
    account: str,
    body: bytes = b"",
    kept: str | None = None,
    extra: dict[str, str] | None = None,
) -> Sent:
    headers = {k: v for k, v in signed.items() if k.lower() != "host"}
    headers["X-Mcdn-Origin-Uri"] = origin_uri
    headers["X-Mcdn-Cloud-Account-Name"] = account
    headers["X-Mcdn-Kept-Headers"] = kept if kept is not None else kept_list(signed)
    headers["X-Origin-Host"] = [*origin_uri.split("/"), "", "", ""][2]
    headers["X-Mcdn-Request-Id"] = "platform-req-1"
    headers.update(extra or {})
    r = requests.request(
        method,
        proxy_url + "/anything?ignored=1",
        headers=headers,
        data=body,
        timeout=30,
        allow_redirects=False,  # a test client never leaves the loopback
    )
    return Sent(r.status_code, dict(r.headers), r.content)
