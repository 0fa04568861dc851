"""A protocol fake of Google Cloud KMS (REST, plain HTTP) for the GCP key-wrapper tests.

This is NOT Google's service and not an emulator of all of it: no Google emulator for Cloud KMS
exists that runs without Docker, so this small server speaks the slice of the real v1 REST wire
protocol that ``google-cloud-kms`` (``transport="rest"``) uses for ``encrypt``/``decrypt``:

- ``POST /v1/{cryptoKey or cryptoKeyVersion}:encrypt`` and ``POST /v1/{cryptoKey}:decrypt``
  with the JSON field names, base64 bytes, string-encoded CRC32C checksums and
  ``verified*Crc32c`` flags of the real API, checked with ``google_crc32c``;
- real AES-256-GCM per key version (the additional authenticated data is bound), a primary
  version that :meth:`FakeGCPKMS.rotate` moves, and disabled versions;
- Google's error JSON (``{"error": {"code", "message", "status"}}``) with 400/401/403/404;
- optional authentication: :meth:`FakeGCPKMS.trust` makes it demand a self-signed service
  account JWT (RS256, as google-auth sends for REST clients) signed by a trusted key.

Keys are created and rotated through Python methods (the admin API is out of scope).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["FakeGCPKMS", "crc32c"]

_KEY_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_SOFTWARE = 1  # ProtectionLevel.SOFTWARE


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


@dataclass
class _Version:
    number: int
    material: bytes
    enabled: bool = True


@dataclass
class _Key:
    versions: dict[int, _Version] = field(default_factory=dict)
    primary: int = 0


class FakeGCPKMS:
    """State of the fake plus the admin methods tests use; :meth:`serve` runs the server."""

    def __init__(self) -> None:
        self.keys: dict[str, _Key] = {}
        self.trusted: dict[str, rsa.RSAPublicKey] = {}
        self.requests: list[tuple[str, frozenset[str]]] = []  # (path, JSON field names)
        self.corrupt_checksums = False  # answer with wrong CRC32C values (fault injection)
        self._lock = threading.Lock()

    # -- admin (Python-side) -------------------------------------------------------------
    def create_key(self, project: str, location: str, ring: str, key: str) -> str:
        name = f"projects/{project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"
        with self._lock:
            self.keys[name] = _Key()
        self.rotate(name)
        return name

    def rotate(self, key_name: str) -> str:
        """Add a version and make it primary; return its resource name."""
        with self._lock:
            key = self.keys[key_name]
            number = max(key.versions, default=0) + 1
            key.versions[number] = _Version(number, AESGCM.generate_key(256))
            key.primary = number
        return f"{key_name}/cryptoKeyVersions/{number}"

    def set_enabled(self, version_name: str, enabled: bool) -> None:
        key_name, _, number = version_name.rpartition("/cryptoKeyVersions/")
        with self._lock:
            self.keys[key_name].versions[int(number)].enabled = enabled

    def trust(self, client_email: str, public_key: rsa.RSAPublicKey) -> None:
        """From now on, demand a JWT signed by one of the trusted service accounts."""
        self.trusted[client_email] = public_key

    # -- operations ----------------------------------------------------------------------
    def encrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key_name, version = self._resolve(name)
        plaintext = _b64field(body, "plaintext")
        aad = _b64field(body, "additionalAuthenticatedData")
        _check_crc(body, "plaintextCrc32c", plaintext)
        _check_crc(body, "additionalAuthenticatedDataCrc32c", aad)
        if not version.enabled:
            raise ApiError(400, "FAILED_PRECONDITION", f"{name} is not enabled")
        nonce = os.urandom(12)
        sealed = AESGCM(version.material).encrypt(nonce, plaintext, aad)
        # The version number travels inside the ciphertext, as in the real (opaque) format.
        ciphertext = version.number.to_bytes(4, "big") + nonce + sealed
        return {
            "name": f"{key_name}/cryptoKeyVersions/{version.number}",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "ciphertextCrc32c": str(crc32c(ciphertext) ^ self.corrupt_checksums),
            "verifiedPlaintextCrc32c": "plaintextCrc32c" in body,
            "verifiedAdditionalAuthenticatedDataCrc32c": "additionalAuthenticatedDataCrc32c"
            in body,
            "protectionLevel": _SOFTWARE,
        }

    def decrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _KEY_RE.match(name):
            raise ApiError(400, "INVALID_ARGUMENT", "decrypt needs a CryptoKey name")
        key = self._key(name)
        ciphertext = _b64field(body, "ciphertext")
        aad = _b64field(body, "additionalAuthenticatedData")
        _check_crc(body, "ciphertextCrc32c", ciphertext)
        _check_crc(body, "additionalAuthenticatedDataCrc32c", aad)
        version = key.versions.get(int.from_bytes(ciphertext[:4], "big"))
        if len(ciphertext) < 4 + 12 + 16 or version is None:
            raise ApiError(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
        if not version.enabled:
            raise ApiError(400, "FAILED_PRECONDITION", f"version {version.number} is not enabled")
        try:
            plaintext = AESGCM(version.material).decrypt(ciphertext[4:16], ciphertext[16:], aad)
        except InvalidTag:
            raise ApiError(
                400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid."
            ) from None
        return {
            "plaintext": base64.b64encode(plaintext).decode(),
            "plaintextCrc32c": str(crc32c(plaintext) ^ self.corrupt_checksums),
            "usedPrimary": version.number == key.primary,
            "protectionLevel": _SOFTWARE,
        }

    def authenticate(self, authorization: str | None) -> None:
        if not self.trusted:
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "UNAUTHENTICATED", "Request is missing required credentials.")
        if not _valid_jwt(authorization[7:], self.trusted):
            raise ApiError(401, "UNAUTHENTICATED", "Request had invalid credentials.")

    def _key(self, key_name: str) -> _Key:
        key = self.keys.get(key_name)
        if key is None:
            raise ApiError(404, "NOT_FOUND", f"{key_name} not found.")
        return key

    def _resolve(self, name: str) -> tuple[str, _Version]:
        key_name, _, number = name.partition("/cryptoKeyVersions/")
        key = self._key(key_name)
        version = key.versions.get(int(number) if number.isdigit() else key.primary)
        if version is None:
            raise ApiError(404, "NOT_FOUND", f"{name} not found.")
        return key_name, version

    # -- server --------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port until the block ends; yield the base URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def _b64field(body: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(body.get(name, ""), validate=True)
    except ValueError:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid value at '{name}'") from None


def _check_crc(body: dict[str, Any], name: str, data: bytes) -> None:
    if name in body and int(body[name]) != crc32c(data):
        raise ApiError(400, "INVALID_ARGUMENT", f"The checksum in field {name} did not match.")


def _unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _valid_jwt(token: str, trusted: dict[str, rsa.RSAPublicKey]) -> bool:
    try:
        header, payload, signature = token.split(".")
        claims = json.loads(_unb64url(payload))
        key = trusted[claims["iss"]]
        key.verify(
            _unb64url(signature),
            f"{header}.{payload}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        return bool(claims["exp"] > time.time())
    except (ValueError, KeyError, InvalidSignature):
        return False


def _handler_for(fake: FakeGCPKMS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                fake.authenticate(self.headers.get("Authorization"))
                body = json.loads(raw or b"{}")
                fake.requests.append((path, frozenset(body)))
                if not path.startswith("/v1/") or ":" not in path:
                    raise ApiError(404, "NOT_FOUND", f"no route {path}")
                name, _, verb = path[4:].rpartition(":")
                if verb == "encrypt":
                    self._reply(200, fake.encrypt(name, body))
                elif verb == "decrypt":
                    self._reply(200, fake.decrypt(name, body))
                else:
                    raise ApiError(404, "NOT_FOUND", f"no method {verb}")
            except ApiError as exc:
                error = {"code": exc.code, "message": exc.message, "status": exc.status}
                self._reply(exc.code, {"error": error})
            except (ValueError, TypeError):
                error = {
                    "code": 400,
                    "message": "Invalid JSON payload",
                    "status": "INVALID_ARGUMENT",
                }
                self._reply(400, {"error": error})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


def service_account_file(path: str, email: str) -> rsa.RSAPrivateKey:
    """Write a service-account JSON key file (fresh RSA key) to ``path``; return the key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        # Never contacted: REST clients send self-signed JWTs; a port-1 URL fails loudly.
        "token_uri": "http://127.0.0.1:1/token",
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    return key
