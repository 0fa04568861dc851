"""A protocol fake of Google Cloud KMS (REST, plain HTTP) for the GCP key-wrapper tests.

This is NOT Google's service and not an emulator of all of it: no Google emulator for Cloud KMS
exists that runs without Docker, so this small server speaks the slice of the real v1 REST wire
protocol that ``google-cloud-kms`` (``transport="rest"``) uses for ``encrypt``/``decrypt``
and for rotating a symmetric key:

- ``POST /v1/{cryptoKey or cryptoKeyVersion}:encrypt`` and ``POST /v1/{cryptoKey}:decrypt``
  with the JSON field names, base64 bytes, string-encoded CRC32C checksums and
  ``verified*Crc32c`` flags of the real API, checked with ``google_crc32c``;
- ``POST /v1/{cryptoKey}/cryptoKeyVersions`` (CreateCryptoKeyVersion: body a CryptoKeyVersion,
  here ``{}``; the next sequential id, ENABLED, *not* made primary; answers the new
  CryptoKeyVersion) and ``POST /v1/{cryptoKey}:updatePrimaryVersion`` (body
  ``{"cryptoKeyVersionId": "N"}``; 404 for an unknown id, FAILED_PRECONDITION for a version that
  is not enabled; answers the CryptoKey with its new ``primary``), enums as integers because the
  SDK asks for ``$alt=json;enum-encoding=int``; ``GET /v1/{cryptoKey}`` (GetCryptoKey, the same
  CryptoKey answer);
- real AES-256-GCM per key version (the additional authenticated data is bound), a primary
  version, and disabled versions;
- Google's error JSON (``{"error": {"code", "message", "status"}}``) with 400/401/403/404;
  IAM permissions named in :attr:`FakeGCPKMS.denied` get Google's 403 PERMISSION_DENIED;
- optional authentication: :meth:`FakeGCPKMS.trust` makes it demand a self-signed service
  account JWT (RS256, as google-auth sends for REST clients) signed by a trusted key.

Changing the primary takes effect at once here unless a test holds it back
(:attr:`FakeGCPKMS.lagging`: Encrypt keeps using the old primary, as Cloud KMS may for about a
minute while a new primary propagates; GetCryptoKey already names the new one).
Keys are created through Python methods (CreateCryptoKey and the rest of the admin API are out
of scope); :meth:`FakeGCPKMS.rotate` rotates from Python as the two RPCs do over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.kms.fake_google_auth import valid_jwt

__all__ = ["FakeGCPKMS", "crc32c"]

_KEY_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_SOFTWARE = 1  # ProtectionLevel.SOFTWARE
_ENABLED, _DISABLED = 1, 2  # CryptoKeyVersionState
_SYMMETRIC = 1  # CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION
_ENCRYPT_DECRYPT = 1  # CryptoKeyPurpose
_CREATED = "2024-01-01T00:00:00.000000Z"
#: RPC -> the IAM permission Cloud KMS checks for it
PERMISSIONS = {
    "encrypt": "cloudkms.cryptoKeyVersions.useToEncrypt",
    "decrypt": "cloudkms.cryptoKeyVersions.useToDecrypt",
    "create": "cloudkms.cryptoKeyVersions.create",
    "updatePrimaryVersion": "cloudkms.cryptoKeys.update",
    "get": "cloudkms.cryptoKeys.get",
}


_GET: dict[str, Any] = {}  # the body of a GET (compared by identity)


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
    served: int = 0  # the version Encrypt uses; follows ``primary`` unless the key lags


class FakeGCPKMS:
    """State of the fake plus the admin methods tests use; :meth:`serve` runs the server."""

    def __init__(self) -> None:
        self.keys: dict[str, _Key] = {}
        self.trusted: dict[str, rsa.RSAPublicKey] = {}
        self.requests: list[tuple[str, frozenset[str]]] = []  # (path, JSON field names)
        self.corrupt_checksums = False  # answer with wrong CRC32C values (fault injection)
        self.denied: set[str] = set()  # IAM permissions (see PERMISSIONS) the caller lacks
        self.lagging: set[str] = set()  # keys whose Encrypt still uses the previous primary
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
            key.primary = self._add_version(key)
            self._serve_primary(key_name, key)
        return f"{key_name}/cryptoKeyVersions/{key.primary}"

    def propagate(self, key_name: str) -> None:
        """End the lag of ``key_name``: Encrypt uses the primary from now on."""
        with self._lock:
            self.lagging.discard(key_name)
            self._serve_primary(key_name, self.keys[key_name])

    def _serve_primary(self, key_name: str, key: _Key) -> None:
        if key_name not in self.lagging or not key.served:
            key.served = key.primary

    @staticmethod
    def _add_version(key: _Key) -> int:
        number = max(key.versions, default=0) + 1
        key.versions[number] = _Version(number, AESGCM.generate_key(256))
        return number

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

    def create_version(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _KEY_RE.match(parent):
            raise ApiError(404, "NOT_FOUND", f"{parent} not found.")
        if body.get("importJob") or body.get("externalProtectionLevelOptions"):
            raise ApiError(400, "INVALID_ARGUMENT", "only generated SOFTWARE versions here")
        with self._lock:
            key = self._key(parent)
            version = key.versions[self._add_version(key)]
        return _version_json(parent, version)

    def update_primary(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        version_id = body.get("cryptoKeyVersionId")
        if not isinstance(version_id, str) or not version_id:
            raise ApiError(400, "INVALID_ARGUMENT", "crypto_key_version_id is required")
        if not version_id.isdigit():
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid crypto_key_version_id {version_id}")
        version_name = f"{name}/cryptoKeyVersions/{version_id}"
        with self._lock:
            key = self._key(name)
            version = key.versions.get(int(version_id))
            if version is None:
                raise ApiError(404, "NOT_FOUND", f"{version_name} not found.")
            if not version.enabled:
                message = f"{version_name} is not in state ENABLED."
                raise ApiError(400, "FAILED_PRECONDITION", message)
            key.primary = version.number
            self._serve_primary(name, key)
        return self.get_key(name, {})

    def get_key(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _KEY_RE.match(name):
            raise ApiError(404, "NOT_FOUND", f"{name} not found.")
        key = self._key(name)
        return {
            "name": name,
            "primary": _version_json(name, key.versions[key.primary]),
            "purpose": _ENCRYPT_DECRYPT,
            "createTime": _CREATED,
            "versionTemplate": {"protectionLevel": _SOFTWARE, "algorithm": _SYMMETRIC},
            "destroyScheduledDuration": "2592000s",
        }

    def authorize(self, verb: str, resource: str) -> None:
        permission = PERMISSIONS[verb]
        if permission in self.denied:
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).",
            )

    def authenticate(self, authorization: str | None) -> None:
        if not self.trusted:
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "UNAUTHENTICATED", "Request is missing required credentials.")
        if not valid_jwt(authorization[7:], self.trusted):
            raise ApiError(401, "UNAUTHENTICATED", "Request had invalid credentials.")

    def _key(self, key_name: str) -> _Key:
        key = self.keys.get(key_name)
        if key is None:
            raise ApiError(404, "NOT_FOUND", f"{key_name} not found.")
        return key

    def _resolve(self, name: str) -> tuple[str, _Version]:
        key_name, _, number = name.partition("/cryptoKeyVersions/")
        key = self._key(key_name)
        version = key.versions.get(int(number) if number.isdigit() else key.served)
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


def _version_json(key_name: str, version: _Version) -> dict[str, Any]:
    return {
        "name": f"{key_name}/cryptoKeyVersions/{version.number}",
        "state": _ENABLED if version.enabled else _DISABLED,
        "protectionLevel": _SOFTWARE,
        "algorithm": _SYMMETRIC,
        "createTime": _CREATED,
        "generateTime": _CREATED,
    }


def _b64field(body: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(body.get(name, ""), validate=True)
    except ValueError:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid value at '{name}'") from None


def _check_crc(body: dict[str, Any], name: str, data: bytes) -> None:
    if name in body and int(body[name]) != crc32c(data):
        raise ApiError(400, "INVALID_ARGUMENT", f"The checksum in field {name} did not match.")


def _dispatch(fake: FakeGCPKMS, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if body is _GET:
        name, verb = path[4:] if path.startswith("/v1/") else path, "get"
    elif path.startswith("/v1/") and path.endswith("/cryptoKeyVersions"):
        name, verb = path[4 : -len("/cryptoKeyVersions")], "create"
    elif path.startswith("/v1/") and ":" in path:
        name, _, verb = path[4:].rpartition(":")
    else:
        raise ApiError(404, "NOT_FOUND", f"no route {path}")
    methods = {
        "encrypt": fake.encrypt,
        "decrypt": fake.decrypt,
        "create": fake.create_version,
        "updatePrimaryVersion": fake.update_primary,
        "get": fake.get_key,
    }
    if verb not in methods:
        raise ApiError(404, "NOT_FOUND", f"no method {verb}")
    fake.authorize(verb, name)
    return methods[verb](name, body)


def _handler_for(fake: FakeGCPKMS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length))

        def _answer(self, raw: bytes | None) -> None:
            path = self.path.split("?", 1)[0]
            try:
                fake.authenticate(self.headers.get("Authorization"))
                body = _GET if raw is None else json.loads(raw or b"{}")
                fake.requests.append((path, frozenset(body)))
                self._reply(200, _dispatch(fake, path, body))
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
