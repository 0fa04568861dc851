"""Google Cloud KMS as a key-encryption key:
``kms://gcp?projectID=&location=&keyRing=&credentialsPath=&keyName=``.

``wrap`` is ``Encrypt`` on the crypto key (the service picks the primary version) with the
associated data as ``additional_authenticated_data``; the ``cryptoKeyVersions/N`` name in the
response is recorded as ``kek_version``.  ``unwrap`` is ``Decrypt`` on the crypto key (the
ciphertext names its version).  Every request and response carries CRC32C checksums, verified
here as Google recommends, so corruption in transit is caught.  ``rotate`` creates a version and
makes it primary.

Credentials come only from ``credentialsPath`` (a service-account JSON key file), never from
``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata server.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, ClassVar, Self

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import ParsedURI

__all__ = ["GCPKMSWrapper", "crc32c"]

_SCOPES = ("https://www.googleapis.com/auth/cloudkms",)
_URI_PARAMS = ("projectID", "location", "keyRing", "credentialsPath", "keyName")
_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC32C_TABLE = []
for _n in range(256):
    for _ in range(8):
        _n = (_n >> 1) ^ (_CRC32C_POLY if _n & 1 else 0)
    _CRC32C_TABLE.append(_n)


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (wrapped keys are small; a table-driven loop is fast enough)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC32C_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _import_sdk() -> Any:
    try:
        kms = importlib.import_module("google.cloud.kms")
    except ImportError as exc:
        raise MissingExtra(
            "Google Cloud KMS needs google-cloud-kms: install keybroker[gcp]"
        ) from exc
    return kms


class GCPKMSWrapper:
    """A Cloud KMS symmetric crypto key.  Construct directly or with :meth:`from_uri`.

    ``credentials`` is a ``google.auth`` credentials object, required (pass the result of
    ``google.auth.default()`` to opt into Application Default Credentials);
    ``endpoint`` overrides the API endpoint (``http://`` for a local fake).
    Raises ``KMSConfigError`` for a bad key name, ``MissingExtra`` without the SDK.
    """

    name: ClassVar[str] = "gcp"
    binds_aad: ClassVar[bool] = True

    def __init__(self, key_name: str, *, credentials: Any, endpoint: str | None = None) -> None:
        parts = key_name.split("/")
        if len(parts) != 8 or parts[::2] != ["projects", "locations", "keyRings", "cryptoKeys"]:
            raise KMSConfigError(
                "GCP KMS key name must be projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )
        if not all(parts[1::2]):
            raise KMSConfigError("GCP KMS key name has an empty component")
        if credentials is None:
            # None would make the SDK search the environment and the metadata server.
            raise KMSConfigError(
                "GCP KMS needs explicit credentials (google.auth.default() for ADC)"
            )
        self.kek_id = key_name
        self._client = _make_client(credentials, endpoint)

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming every missing or unknown parameter."""
        parsed.check_known(*_URI_PARAMS, "endpoint")
        parsed.require(*_URI_PARAMS)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://gcp`` URI: reads the key file, no network I/O.

        Raises ``KMSConfigError`` (missing/unknown parameter, unreadable key file),
        ``MissingExtra``.
        """
        cls.validate_uri(parsed)
        p = parsed.params
        key_name = "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}".format(
            p["projectID"], p["location"], p["keyRing"], p["keyName"]
        )
        credentials = _load_credentials(parsed.label, p["credentialsPath"])
        return cls(key_name, credentials=credentials, endpoint=parsed.optional("endpoint"))

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """``Encrypt`` under the primary version, binding ``aad``.

        Raises ``KMSConfigError`` (missing key), ``BackendError`` (disabled version, service
        failure or a checksum mismatch).
        """
        request = {
            "name": self.kek_id,
            "plaintext": plaintext,
            "additional_authenticated_data": aad,
            "plaintext_crc32c": crc32c(plaintext),
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
        resp = await self._call("Encrypt", self._client.encrypt, request)
        verified = (
            resp.verified_plaintext_crc32c and resp.verified_additional_authenticated_data_crc32c
        )
        if not verified or resp.ciphertext_crc32c != crc32c(resp.ciphertext):
            raise BackendError("GCP KMS Encrypt failed: checksum not verified")
        if not str(resp.name).startswith(self.kek_id + "/cryptoKeyVersions/"):
            raise BackendError("GCP KMS Encrypt answered for another key")
        return WrappedKey(self.kek_id, str(resp.name), bytes(resp.ciphertext))

    async def rotate(self) -> str:
        """``CreateCryptoKeyVersion`` (new key material, generated by the service), then
        ``UpdateCryptoKeyPrimaryVersion`` to it; older versions stay enabled and still decrypt.
        Returns the new version's resource name, the form recorded as ``kek_version``.

        Cloud KMS propagates a new primary eventually (usually within a minute): until then
        ``Encrypt`` may still use the previous version (rewrap, which targets
        :meth:`current_version`, then fails those ids until a later run).  Needs
        ``cloudkms.cryptoKeyVersions.create`` and ``cloudkms.cryptoKeys.update``.  Raises
        ``KMSConfigError`` (missing key), ``BackendError`` (permission denied, service failure;
        if only the second call fails, the error names the version left behind, not primary).
        """
        created = await self._call(
            "CreateCryptoKeyVersion",
            self._client.create_crypto_key_version,
            {"parent": self.kek_id, "crypto_key_version": {}},
        )
        version, prefix = str(created.name), self.kek_id + "/cryptoKeyVersions/"
        if not version.startswith(prefix) or not version[len(prefix) :].isdigit():
            raise BackendError("GCP KMS CreateCryptoKeyVersion answered for another key")
        request = {"name": self.kek_id, "crypto_key_version_id": version[len(prefix) :]}
        try:
            key = await self._call(
                "UpdateCryptoKeyPrimaryVersion",
                self._client.update_crypto_key_primary_version,
                request,
            )
        except BackendError as exc:
            raise BackendError(f"{exc} ({version} was created but is not primary)") from exc
        if str(key.primary.name) != version:
            raise BackendError("GCP KMS UpdateCryptoKeyPrimaryVersion did not take effect")
        return version

    async def current_version(self) -> str:
        """The primary version's resource name (``GetCryptoKey``): what rewrap re-seals under.

        Read from the key itself rather than from a probe ``Encrypt``, which may still use the
        previous primary for a while after a rotation.  Needs ``cloudkms.cryptoKeys.get``.
        Raises ``KMSConfigError`` (missing key), ``BackendError`` (permission denied, no
        primary, service failure).
        """
        key = await self._call("GetCryptoKey", self._client.get_crypto_key, {"name": self.kek_id})
        version = str(key.primary.name)
        if not version.startswith(self.kek_id + "/cryptoKeyVersions/"):
            raise BackendError("GCP KMS GetCryptoKey: the key has no primary version")
        return version

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """``Decrypt`` on the crypto key (the ciphertext names the version that made it).

        Raises ``IntegrityError`` for a wrong ciphertext or ``aad``, ``BackendError`` otherwise.
        """
        if not wrapped.ciphertext or not wrapped.kek_version.startswith(self.kek_id + "/"):
            raise IntegrityError("the wrapped key cannot be unwrapped")
        request = {
            "name": self.kek_id,
            "ciphertext": wrapped.ciphertext,
            "additional_authenticated_data": aad,
            "ciphertext_crc32c": crc32c(wrapped.ciphertext),
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
        resp = await self._call("Decrypt", self._client.decrypt, request)
        if resp.plaintext_crc32c != crc32c(resp.plaintext):
            raise BackendError("GCP KMS Decrypt failed: checksum mismatch")
        return bytes(resp.plaintext)

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        self._client.transport.close()

    async def _call(self, op: str, fn: Any, request: dict[str, Any]) -> Any:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        try:
            # Retries are ours to decide: a bad request must fail at once, not after backoff.
            return await asyncio.to_thread(fn, request=request, retry=None, timeout=30.0)
        except gexc.GoogleAPICallError as exc:
            raise _map_api_error(op, self.kek_id, exc) from exc
        except (aexc.GoogleAuthError, gexc.GoogleAPIError, OSError) as exc:
            raise BackendError(f"GCP KMS {op} failed: {type(exc).__name__}") from exc


def _make_client(credentials: Any, endpoint: str | None) -> Any:
    kms = _import_sdk()
    from google.api_core.client_options import ClientOptions

    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    return kms.KeyManagementServiceClient(
        transport="rest", credentials=credentials, client_options=options
    )


def _load_credentials(label: str, path: str) -> Any:
    _import_sdk()
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            path, scopes=_SCOPES
        )
    except (OSError, ValueError, KeyError) as exc:
        # The path is configuration, not a secret; the file's content never enters the message.
        raise KMSConfigError(
            f"{label}: credentialsPath {path!r} is not a service-account key file"
        ) from exc


def _rpc_status(exc: Any) -> str:
    # REST errors carry the RPC status name in the body; HTTP 400 alone covers several.
    try:
        return str(exc.response.json()["error"]["status"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return type(exc).__name__


def _map_api_error(op: str, key_name: str, exc: Any) -> Exception:
    code = getattr(exc, "code", None)
    status = _rpc_status(exc)
    if code == 404 or status == "NOT_FOUND":
        return KMSConfigError(f"GCP KMS key {key_name!r} does not exist")
    if status == "FAILED_PRECONDITION":
        return BackendError(f"GCP KMS {op} failed: a version of {key_name!r} is not enabled")
    if op == "Decrypt" and status == "INVALID_ARGUMENT":
        return IntegrityError("the wrapped key cannot be unwrapped")
    return BackendError(f"GCP KMS {op} failed: {code} {status}")
