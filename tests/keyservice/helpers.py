"""A running keybroker with the key service on, and clients that sign like real platforms:
botocore's SigV4 (service ``kms``) and the Volcengine SDK's signer, with PROXY credentials."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from volcenginesdkcore.signv4 import SignerV4

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import (
    AuditConfig,
    Config,
    Endpoint,
    GrpcConfig,
    KeyPolicy,
    KeyServiceConfig,
    SecurityConfig,
)
from tests import logscan
from tests.proxy.harness import ProxyThread, proxy_running

PREFIX = "/_keybroker/kms"
ALL_OPS = ["*"]


@dataclass
class Account:
    name: str
    vendor: str
    access_key: str
    secret_key: str
    key_policy: KeyPolicy | None

    def endpoint(self) -> Endpoint:
        real = "REAL" + secrets.token_hex(8), secrets.token_urlsafe(24)
        logscan.register(real[1])
        return Endpoint(
            cloud_account_name=self.name,
            vendor=self.vendor,
            proxy=Credential(self.access_key, Secret(self.secret_key)),
            real=Credential(real[0], Secret(real[1])),
            key_policy=self.key_policy,
        )


def account(name: str, policy: KeyPolicy | None, vendor: str = "aws") -> Account:
    head = "AKID" if vendor == "aws" else "AKLT"
    ak = head + name.upper().replace("-", "") + secrets.token_hex(4)
    sk = secrets.token_urlsafe(30)
    logscan.register(sk)
    return Account(name, vendor, ak, sk, policy)


def standard_accounts() -> dict[str, Account]:
    everything = ["get", "create", "generate", "unwrap", "rewrap", "list", "delete", "status"]
    return {
        "full": account("full", KeyPolicy(prefixes=[], operations=ALL_OPS)),
        "tenant-a": account("tenant-a", KeyPolicy(prefixes=["tenant-a/"], operations=everything)),
        "reader": account("reader", KeyPolicy(prefixes=["tenant-a/"], operations=["get"])),
        "creator": account("creator", KeyPolicy(prefixes=["tenant-a/"], operations=["create"])),
        "nokeys": account("nokeys", None),
        "volc": account("volc", KeyPolicy(prefixes=[], operations=ALL_OPS), vendor="volcengine"),
    }


@dataclass
class KeyBroker:
    """A running proxy with the key service, and the files behind it."""

    url: str
    thread: ProxyThread
    accounts: dict[str, Account]
    kms_uri: str
    storage_uri: str
    audit_dir: Path
    grpc_port: int | None = None
    sent: list[bytes] = field(default_factory=list)  # every key and blob handed out (base64)

    def call(
        self,
        method: str,
        path: str,
        *,
        who: str = "full",
        query: dict[str, str] | None = None,
        body: bytes | dict[str, Any] | None = None,
        secret: str | None = None,
    ) -> requests.Response:
        acct = self.accounts[who]
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        if acct.vendor == "volcengine":
            response = _volc_call(self.url, acct, method, path, query or {}, data, secret)
        else:
            response = _sigv4_call(self.url, acct, method, path, query or {}, data, secret)
        self._remember(response)
        return response

    def _remember(self, response: requests.Response) -> None:
        try:
            doc = response.json()
        except ValueError:
            return
        if isinstance(doc, dict):
            for name in ("plaintext", "blob"):
                if isinstance(doc.get(name), str):
                    self.sent.append(doc[name].encode())

    def audit_lines(self) -> list[dict[str, Any]]:
        text = (self.audit_dir / "audit.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line]

    def key_events(self) -> list[dict[str, Any]]:
        return [e for e in self.audit_lines() if e.get("event") == "key"]


def _url(base: str, path: str, query: dict[str, str]) -> str:
    q = f"?{urlencode(query)}" if query else ""
    return f"{base}{PREFIX}/{path}{q}"


def _sigv4_call(
    base: str,
    acct: Account,
    method: str,
    path: str,
    query: dict[str, str],
    data: bytes,
    secret: str | None,
) -> requests.Response:
    url = _url(base, path, query)
    headers = {"Content-Type": "application/json"} if data else {}
    req = AWSRequest(method=method, url=url, data=data, headers=headers)
    creds = Credentials(acct.access_key, secret or acct.secret_key)
    SigV4Auth(creds, "kms", "us-east-1").add_auth(req)
    prepared = req.prepare()
    return requests.request(
        method, prepared.url, headers=dict(prepared.headers), data=data, timeout=10
    )


def _volc_call(
    base: str,
    acct: Account,
    method: str,
    path: str,
    query: dict[str, str],
    data: bytes,
    secret: str | None,
) -> requests.Response:
    host = urlsplit(base).netloc
    headers = {"Content-Type": "application/json", "Host": host}
    SignerV4.sign(
        f"{PREFIX}/{path}",
        method,
        headers,
        data.decode(),
        None,
        list(query.items()),
        acct.access_key,
        secret or acct.secret_key,
        "cn-beijing",
        "kms",
        None,
    )
    return requests.request(method, _url(base, path, query), headers=headers, data=data, timeout=10)


def local_kms(tmp: Path) -> tuple[str, str]:
    """A ``kms://local`` key file and a ``storage://file`` directory under ``tmp``."""
    kek = tmp / "kek.bin"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    deks = tmp / "deks"
    return f"kms://local?keyFile={kek}", f"storage://file?path={deks}"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@contextmanager
def keybroker(
    tmp: Path,
    *,
    kms_uri: str | None = None,
    storage_uri: str | None = None,
    accounts: dict[str, Account] | None = None,
    grpc: GrpcConfig | None = None,
    max_dek_size: int = 64,
    replay: bool = False,
    legacy_blobs: str = "off",
    replay_protection: str = "mutating",
    trusted_store: bool = False,
) -> Iterator[KeyBroker]:
    """A proxy with the key service (local KEK and file storage unless given), audit on."""
    if kms_uri is None:
        kms_uri, storage_uri = local_kms(tmp)
    accounts = accounts or standard_accounts()
    audit_dir = logscan.log_dir(tmp / "audit")
    config = Config(
        audit=AuditConfig(output=str(audit_dir), enabled=True),
        security=SecurityConfig(replay_protection=replay_protection),
        endpoints=[a.endpoint() for a in accounts.values()],
        key_service=KeyServiceConfig(
            enabled=True,
            path_prefix=PREFIX,
            kms=kms_uri,
            storage=storage_uri or "",
            grpc=grpc or GrpcConfig(),
            max_dek_size=max_dek_size,
            legacy_blobs=legacy_blobs,
            trusted_store=trusted_store,
        ),
    )
    with proxy_running(config, replay=replay) as (url, thread):
        svc = thread.proxy._keyservice
        port = svc.grpc.port if svc is not None and svc.grpc is not None else None
        yield KeyBroker(url, thread, accounts, kms_uri, storage_uri or "", audit_dir, port)


def error_code(response: requests.Response) -> str:
    return str(response.json()["ResponseMetadata"]["Error"]["Code"])
