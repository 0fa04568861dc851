"""A protocol fake of Azure Key Vault and its Entra ID token endpoint, over HTTPS.

This is NOT Microsoft's service: no Key Vault emulator runs here without Docker, so this small
server speaks the slice of the real wire protocols that ``azure-keyvault-keys`` and
``azure-identity``'s ``ClientSecretCredential`` (via MSAL) use:

- identity: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and the client-credentials
  grant ``POST /{tenant}/oauth2/v2.0/token`` (checks client id + secret, issues random bearer
  tokens; a wrong secret gets AADSTS7000215 ``invalid_client``);
- Key Vault (``?api-version=7.x``): a request without a valid bearer token gets
  ``401`` + ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="..."``;
  ``GET /keys/{name}[/{version}]`` returns the JSON web key bundle; ``POST
  /keys/{name}/{version}/wrapkey|unwrapkey`` does RSA-OAEP / RSA-OAEP-256 with real RSA keys
  (``cryptography``); ``POST /keys/{name}/{version}/sign|verify`` signs a digest
  (``{"alg": "RS256", "value": b64url}`` -> ``{"kid", "value": b64url signature}``) and checks
  one (``{"alg", "digest", "value"}`` -> ``{"value": bool}``); ``POST /keys/{name}/rotate``
  (Rotate Key, API 7.3+: no body) makes a new latest version of the same type and size and
  answers its key bundle; errors use Key Vault's ``{"error": {"code", "message"}}`` shape;
- access control: key permissions named in :attr:`FakeKeyVault.denied` (``get``, ``wrapKey``,
  ``unwrapKey``, ``sign``, ``verify``, ``rotate``) get Key Vault's 403 ``Forbidden`` with
  inner error ``AccessDenied``, as under an access policy without them.

Keys and the enabled flag are managed from Python (Create Key and rotation policies are out
of scope); :meth:`FakeKeyVault.rotate` adds a version from Python as Rotate Key does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.kms.tls_ca import TestCA

__all__ = ["FakeKeyVault"]

_RESOURCE = "https://vault.azure.net"
_KEY_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
_HASHES = {"RSA-OAEP": hashes.SHA1, "RSA-OAEP-256": hashes.SHA256}
_SIGN_HASHES: dict[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


class KVError(Exception):
    def __init__(self, status: int, code: str, message: str, *, inner: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


@dataclass
class _Key:
    versions: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    enabled: bool = True


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class FakeKeyVault:
    """State plus admin methods; :meth:`serve` runs the HTTPS server (vault + identity)."""

    def __init__(
        self,
        ca: TestCA,
        *,
        tenant: str,
        client_id: str,
        client_secret: str,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        """``on_token`` sees every bearer token issued (the log scan treats them as secrets)."""
        self.ca = ca
        self.on_token = on_token
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.keys: dict[str, _Key] = {}
        self.tokens: dict[str, float] = {}
        self.calls: list[str] = []
        self.denied: set[str] = set()  # key permissions the client lacks
        self.base_url = ""
        self._lock = threading.Lock()

    # -- admin ---------------------------------------------------------------------------
    def create_key(self, name: str, size: int = 2048) -> str:
        with self._lock:
            self.keys[name] = _Key()
        return self.rotate(name, size)

    def rotate(self, name: str, size: int | None = None) -> str:
        """Add a new (latest) version, by default of the latest one's size; return its id."""
        version = secrets.token_hex(16)
        if size is None:
            latest = self.keys[name]
            size = latest.versions[latest.order[-1]].key_size
        key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        with self._lock:
            self.keys[name].versions[version] = key
            self.keys[name].order.append(version)
        return version

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.keys[name].enabled = enabled

    # -- identity ------------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "response_types_supported": ["code", "id_token", "token"],
            "tenant_region_scope": "WW",
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if tenant != self.tenant:
            return 400, {
                "error": "invalid_request",
                "error_description": "AADSTS90002: Tenant not found.",
            }
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"}
        secret_ok = secrets.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        )
        if form.get("client_id") != self.client_id or not secret_ok:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        if not form.get("scope", "").startswith(_RESOURCE):
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011"}
        token = secrets.token_urlsafe(32)
        if self.on_token is not None:
            self.on_token(token)
        self.tokens[token] = time.time() + 3600
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry = self.tokens.get(header[7:])
        return expiry is not None and expiry > time.time()

    def challenge(self) -> str:
        return f'Bearer authorization="{self.base_url}/{self.tenant}", resource="{_RESOURCE}"'

    # -- vault ---------------------------------------------------------------------------
    def get_key(self, name: str, version: str | None) -> dict[str, Any]:
        key, version = self._find(name, version)
        public = key.versions[version].public_key().public_numbers()
        return {
            "key": {
                "kid": f"{self.base_url}/keys/{name}/{version}",
                "kty": "RSA",
                "key_ops": _KEY_OPS,
                "n": _b64url(_int_bytes(public.n)),
                "e": _b64url(_int_bytes(public.e)),
            },
            "attributes": {
                "enabled": key.enabled,
                "created": 1700000000,
                "updated": 1700000000,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }

    def wrap(self, op: str, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        key, version = self._find(name, version)
        if not key.enabled:
            raise KVError(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.")
        algorithm = _HASHES.get(body.get("alg", ""))
        if algorithm is None:
            raise KVError(400, "BadParameter", "Invalid algorithm.")
        try:
            value = _unb64url(str(body["value"]))
        except (KeyError, ValueError):
            raise KVError(400, "BadParameter", "Property value is required.") from None
        oaep = padding.OAEP(mgf=padding.MGF1(algorithm()), algorithm=algorithm(), label=None)
        private = key.versions[version]
        try:
            if op == "wrapKey":
                out = private.public_key().encrypt(value, oaep)
            else:
                out = private.decrypt(value, oaep)
        except ValueError:
            raise KVError(400, "BadParameter", "The parameter is incorrect.") from None
        return {"kid": f"{self.base_url}/keys/{name}/{version}", "value": _b64url(out)}

    def sign(self, op: str, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign / Verify (``RS256``..``RS512``, ``PS256``..``PS512``) over a digest, as Key
        Vault does: the digest is the ``value`` (sign) or ``digest`` (verify), base64url."""
        key, version = self._find(name, version)
        if not key.enabled:
            raise KVError(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.")
        alg = str(body.get("alg", ""))
        algorithm = _SIGN_HASHES.get(alg[2:]) if alg[:2] in ("RS", "PS") else None
        if algorithm is None:
            raise KVError(400, "BadParameter", "Invalid algorithm.")
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(algorithm()), salt_length=algorithm.digest_size)
        )
        private = key.versions[version]
        kid = f"{self.base_url}/keys/{name}/{version}"
        try:
            if op == "sign":
                digest = _unb64url(str(body["value"]))
                if len(digest) != algorithm.digest_size:
                    raise KVError(400, "BadParameter", "Invalid digest length.")
                signature = private.sign(digest, pad, Prehashed(algorithm()))
                return {"kid": kid, "value": _b64url(signature)}
            digest, signature = _unb64url(str(body["digest"])), _unb64url(str(body["value"]))
        except (KeyError, ValueError):
            raise KVError(400, "BadParameter", "Property value is required.") from None
        try:
            private.public_key().verify(signature, digest, pad, Prehashed(algorithm()))
        except (InvalidSignature, ValueError):
            return {"value": False}
        return {"value": True}

    def rotate_key(self, name: str) -> dict[str, Any]:
        self._find(name, None)
        return self.get_key(name, self.rotate(name))

    def authorize(self, permission: str) -> None:
        if permission in self.denied:
            raise KVError(
                403,
                "Forbidden",
                f"The user, group or application 'appid={self.client_id};oid=0' does not have "
                f"keys {permission} permission on key vault 'kbvault;location=westeurope'.",
                inner="AccessDenied",
            )

    def _find(self, name: str, version: str | None) -> tuple[_Key, str]:
        key = self.keys.get(name)
        if key is None or (version and version not in key.versions):
            raise KVError(
                404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault."
            )
        return key, version or key.order[-1]

    # -- server --------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve HTTPS on a free loopback port until the block ends; yield the base URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.socket = self.ca.server_context().wrap_socket(server.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self.base_url
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def _route(
    fake: FakeKeyVault, method: str, parts: list[str], body: bytes, auth: str | None
) -> tuple[int, dict[str, Any]]:
    if method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
        return 200, fake.openid_configuration(parts[0])
    if method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        return fake.token(parts[0], form)
    if not parts or parts[0] != "keys":
        raise KVError(404, "NotFound", "no such route")
    if not fake.authorized(auth):
        raise KVError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
    if method == "GET" and len(parts) in (2, 3):
        fake.authorize("get")
        return 200, fake.get_key(parts[1], parts[2] if len(parts) == 3 else None)
    if method == "POST" and parts[2:] == ["rotate"]:
        fake.authorize("rotate")
        return 200, fake.rotate_key(parts[1])
    if method == "POST" and len(parts) == 4 and parts[3] in ("sign", "verify"):
        fake.authorize(parts[3])
        return 200, fake.sign(parts[3], parts[1], parts[2], json.loads(body or b"{}"))
    ops = {"wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}
    if method == "POST" and len(parts) == 4 and parts[3] in ops:
        fake.authorize(ops[parts[3]])
        return 200, fake.wrap(ops[parts[3]], parts[1], parts[2], json.loads(body or b"{}"))
    raise KVError(405, "BadRequest", "unsupported operation")


def _handler_for(fake: FakeKeyVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            path = urllib.parse.urlsplit(self.path).path
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.calls.append(f"{method} {path}")
            parts = [p for p in path.split("/") if p]
            try:
                status, payload = _route(
                    fake, method, parts, body, self.headers.get("Authorization")
                )
            except KVError as exc:
                status, payload = exc.status, exc.payload()
            except ValueError:
                status, payload = 400, {"error": {"code": "BadParameter", "message": "bad JSON"}}
            self._reply(status, payload)

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            if status == 401 and "error" in payload and isinstance(payload["error"], dict):
                self.send_header("WWW-Authenticate", fake.challenge())
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler
