"""Azure Key Vault / Managed HSM as a key-encryption key:
``kms://azure?tenantID=&clientID=&clientSecret=&vaultName=&vaultType=&keyName=``.

The vault is ``https://<vaultName>.<vaultType>/`` (``vaultType`` is one of the five DNS suffixes
below).  ``wrap`` fetches the latest version of the RSA key and wraps with RSA-OAEP-256 (the SDK
does this with the version's public key when the key allows it — the same operation the
service's ``wrapKey`` performs); the version is recorded as ``kek_version``.  ``unwrap`` calls
the service's ``unwrapKey`` on that exact version, so older blobs survive key rotation.
``rotate`` calls the service's Rotate Key (a new latest version of the same key).

RSA-OAEP has no associated data: ``binds_aad`` is False and ``aad`` is ignored.  Since anyone
with the public key can wrap, every envelope is also *signed by the vault*
(:mod:`keybroker.kms.binding`): :meth:`sign_digest` is the service's ``sign`` with ``RS256``
on the version that wrapped (the private key never leaves the vault) and :meth:`verify_digest`
checks it (the SDK verifies with the version's public key).  The key needs the ``sign`` and
``verify`` operations, and the client the ``keys/sign`` (and ``keys/get``) permissions.

Our optional parameters: ``endpoint`` (vault URL override, for sovereign clouds or a fake),
``authorityHost`` (Entra ID host, default: the one of ``vaultType``'s cloud) and ``caFile``
(PEM bundle to trust instead of the system store).  Environment variables such as
``AZURE_AUTHORITY_HOST`` or ``AZURE_CLIENT_SECRET`` are never consulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, ClassVar, Self

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

__all__ = ["VAULT_TYPES", "AzureKeyVaultWrapper"]

#: vaultType DNS suffix -> Entra ID (login) host of that cloud
VAULT_TYPES: dict[str, str] = {
    "vault.azure.net": "login.microsoftonline.com",
    "vault.azure.cn": "login.chinacloudapi.cn",
    "vault.usgovcloudapi.net": "login.microsoftonline.us",
    "vault.microsoftazure.de": "login.microsoftonline.de",
    "managedhsm.azure.net": "login.microsoftonline.com",
}
_REQUIRED = ("tenantID", "clientID", "clientSecret", "vaultName", "vaultType", "keyName")
_OPTIONAL = ("endpoint", "authorityHost", "caFile")
_ALGORITHM = "RSA-OAEP-256"
# azure-core retries 10 times by default; a DEK request should fail in seconds, not minutes.
_RETRY = {"retry_total": 2, "retry_backoff_factor": 0.2}


def _import_sdk() -> Any:
    try:
        from azure.identity import ClientSecretCredential
        from azure.keyvault.keys import KeyClient
    except ImportError as exc:
        raise MissingExtra(
            "Azure Key Vault needs azure-keyvault-keys and azure-identity: install keybroker[azure]"
        ) from exc
    return KeyClient, ClientSecretCredential


class AzureKeyVaultWrapper:
    """An RSA key in Azure Key Vault or Managed HSM; see the module docstring.

    Construct with :meth:`from_uri`, or directly with a vault URL and any azure-core token
    credential.  ``connection_verify`` is a CA bundle path (or ``True`` for the system store).
    Raises ``MissingExtra`` without the SDK.
    """

    name: ClassVar[str] = "azure"
    binds_aad: ClassVar[bool] = False

    def __init__(
        self,
        vault_url: str,
        key_name: str,
        credential: Any,
        *,
        connection_verify: str | bool = True,
    ) -> None:
        key_client_cls, _ = _import_sdk()
        self._vault_url = vault_url.rstrip("/")
        self._key_name = key_name
        self.kek_id = f"{self._vault_url}/keys/{key_name}"
        self._credential = credential
        self._options: dict[str, Any] = {
            # The challenge's resource is a fixed Azure host, not the vault's (Managed HSM,
            # sovereign clouds and endpoint overrides differ); the URL we connect to is ours.
            "verify_challenge_resource": False,
            "connection_verify": connection_verify,
            **_RETRY,
        }
        self._keys = key_client_cls(self._vault_url, credential, **self._options)
        self._crypto: dict[str, Any] = {}  # version -> CryptographyClient (unwrap)
        self._lock = threading.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming missing/unknown parameters or a bad ``vaultType``."""
        parsed.check_known(*_REQUIRED, *_OPTIONAL)
        values = parsed.require(*_REQUIRED)
        if values["vaultType"] not in VAULT_TYPES:
            allowed = ", ".join(VAULT_TYPES)
            raise KMSConfigError(f"{parsed.label}: vaultType must be one of: {allowed}")

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://azure`` URI (no network I/O).  ``clientSecret`` may be an
        ``env:``/``file:`` reference.  Raises ``KMSConfigError``, ``MissingExtra``."""
        cls.validate_uri(parsed)
        p = parsed.params
        _, credential_cls = _import_sdk()
        authority = parsed.optional("authorityHost") or VAULT_TYPES[p["vaultType"]]
        verify: str | bool = parsed.optional("caFile") or True
        secret = resolve_secret(p["clientSecret"], what=f"{parsed.label} clientSecret")
        credential = credential_cls(
            p["tenantID"],
            p["clientID"],
            secret.reveal(),
            authority=authority,
            # Instance discovery asks login.microsoftonline.com about unknown hosts; a custom
            # authorityHost is trusted as configured.
            disable_instance_discovery="authorityHost" in p,
            connection_verify=verify,
            **_RETRY,
        )
        url = parsed.optional("endpoint") or f"https://{p['vaultName']}.{p['vaultType']}/"
        return cls(url, p["keyName"], credential, connection_verify=verify)

    @classmethod
    def with_client_secret(
        cls,
        vault_url: str,
        key_name: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: Secret,
        authority: str = VAULT_TYPES["vault.azure.net"],
        connection_verify: str | bool = True,
    ) -> Self:
        """Direct construction with a client-secret credential (no network I/O)."""
        _, credential_cls = _import_sdk()
        credential = credential_cls(
            tenant_id,
            client_id,
            client_secret.reveal(),
            authority=authority,
            disable_instance_discovery=authority not in VAULT_TYPES.values(),
            connection_verify=connection_verify,
            **_RETRY,
        )
        return cls(vault_url, key_name, credential, connection_verify=connection_verify)

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """Wrap with RSA-OAEP-256 under the latest key version (``aad`` is not bound).

        Raises ``KMSConfigError`` (no such key), ``BackendError`` (disabled key, auth or
        service failure).
        """
        version, ciphertext = await self._call("wrapKey", self._wrap_sync, plaintext)
        return WrappedKey(self.kek_id, version, ciphertext)

    async def rotate(self) -> str:
        """The service's Rotate Key: a new version of the key (same type, size and operations,
        attributes from the key's rotation policy) becomes the latest, which new wraps use;
        older versions stay and still unwrap.  Returns the new version, the form recorded as
        ``kek_version``.

        Needs the ``keys/rotate`` permission (Key Vault and Managed HSM, API 7.3 and later);
        unlike Create Key on the same name, nothing (type, size, operations, HSM protection) has
        to be restated.  Raises ``KMSConfigError`` (no such key), ``BackendError`` (permission
        denied, auth or service failure).
        """
        return str(await self._call("rotateKey", self._rotate_sync, None))

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """``unwrapKey`` with the recorded version.

        Raises ``IntegrityError`` (bad ciphertext), ``KMSConfigError`` (unknown key or
        version), ``BackendError`` (auth or service failure).
        """
        version = self._version_of(wrapped.kek_version)
        if not wrapped.ciphertext or not version.isalnum():
            raise IntegrityError("the wrapped key cannot be unwrapped")
        return bytes(await self._call("unwrapKey", self._unwrap_sync, (version, wrapped)))

    async def sign_digest(self, kek_version: str, digest: bytes) -> bytes:
        """The vault's ``RS256`` signature of the SHA-256 ``digest`` with version
        ``kek_version``.  Raises ``KMSConfigError`` (unknown key or version), ``BackendError``
        (no ``keys/sign`` permission, a key without the ``sign`` operation, service failure)."""
        version = self._version_of(kek_version)
        if not version.isalnum():
            raise KMSConfigError(f"Azure key {self.kek_id!r}: no such key version")
        return bytes(await self._call("sign", self._sign_sync, (version, digest)))

    async def verify_digest(self, kek_version: str, digest: bytes, signature: bytes) -> bool:
        """Is ``signature`` the ``RS256`` signature of ``digest`` by version ``kek_version``?
        A version the vault does not have (a tampered blob names any) verifies nothing.
        Raises ``BackendError``."""
        version = self._version_of(kek_version)
        if not version.isalnum() or not signature:
            return False
        try:
            valid = await self._call("verify", self._verify_sync, (version, digest, signature))
        except (IntegrityError, KMSConfigError):
            return False
        return valid is True

    async def close(self) -> None:
        """Close the HTTP sessions and the credential; idempotent."""
        with self._lock:
            clients, self._crypto = list(self._crypto.values()), {}
        for client in clients:
            client.close()
        self._keys.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()

    # -- synchronous SDK calls, run in a worker thread -------------------------------------
    def _wrap_sync(self, plaintext: bytes) -> tuple[str, bytes]:
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

        key = self._keys.get_key(self._key_name)
        if not key.properties.enabled:
            raise BackendError(f"Azure key {self.kek_id!r} is disabled")
        with CryptographyClient(key, self._credential, **self._options) as crypto:
            result = crypto.wrap_key(KeyWrapAlgorithm(_ALGORITHM), plaintext)
        return str(key.properties.version), bytes(result.encrypted_key)

    def _rotate_sync(self, _: None) -> str:
        key = self._keys.rotate_key(self._key_name)
        version = str(key.properties.version or "")
        if key.name != self._key_name or not version.isalnum():
            raise BackendError("Azure Key Vault rotateKey answered for another key")
        return version

    def _version_of(self, kek_version: str) -> str:
        # A bare version is what we record; a full key id (".../keys/<name>/<version>") is
        # accepted too, for blobs written by other tools, if it names this key.
        prefix, _, version = kek_version.rpartition("/")
        if not prefix:
            return kek_version
        return version if prefix.endswith(f"/keys/{self._key_name}") else ""

    def _unwrap_sync(self, args: tuple[str, WrappedKey]) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        version, wrapped = args
        with self._crypto_for(version) as crypto:
            result = crypto.unwrap_key(KeyWrapAlgorithm(_ALGORITHM), wrapped.ciphertext)
        return bytes(result.key)

    def _sign_sync(self, args: tuple[str, bytes]) -> bytes:
        from azure.keyvault.keys.crypto import SignatureAlgorithm

        version, digest = args
        with self._crypto_for(version) as crypto:
            return bytes(crypto.sign(SignatureAlgorithm.rs256, digest).signature)

    def _verify_sync(self, args: tuple[str, bytes, bytes]) -> bool:
        from azure.keyvault.keys.crypto import SignatureAlgorithm

        version, digest, signature = args
        with self._crypto_for(version) as crypto:
            result = crypto.verify(SignatureAlgorithm.rs256, digest, signature)
        return bool(result.is_valid)

    @contextlib.contextmanager
    def _crypto_for(self, version: str) -> Iterator[Any]:
        """The client of key version ``version``.  A new one is kept only once a call with it
        succeeded: a blob naming versions the vault does not have (any stored blob can) must
        not grow the cache."""
        from azure.keyvault.keys.crypto import CryptographyClient

        with self._lock:
            cached = self._crypto.get(version)
        if cached is not None:
            yield cached
            return
        client = CryptographyClient(f"{self.kek_id}/{version}", self._credential, **self._options)
        try:
            yield client
        except BaseException:
            client.close()
            raise
        with self._lock:
            keep = version not in self._crypto
            if keep:
                self._crypto[version] = client
        if not keep:
            client.close()

    async def _call(self, op: str, fn: Any, arg: Any) -> Any:
        from azure.core import exceptions as aexc

        try:
            return await asyncio.to_thread(fn, arg)
        except aexc.ClientAuthenticationError as exc:
            raise BackendError(f"Azure Key Vault {op} failed: authentication failed") from exc
        except aexc.ResourceNotFoundError as exc:
            raise KMSConfigError(
                f"Azure key {self.kek_id!r} (or its version) does not exist"
            ) from exc
        except aexc.HttpResponseError as exc:
            raise _map_http_error(op, self.kek_id, exc) from exc
        except aexc.AzureError as exc:
            raise BackendError(f"Azure Key Vault {op} failed: {type(exc).__name__}") from exc


def _map_http_error(op: str, kek_id: str, exc: Any) -> Exception:
    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None)
    if op in ("unwrapKey", "verify") and status == 400:
        return IntegrityError("the wrapped key cannot be unwrapped")
    if status == 403 and "disabled" in str(getattr(exc, "message", "")):
        return BackendError(f"Azure Key Vault {op} failed: key {kek_id!r} is disabled")
    return BackendError(f"Azure Key Vault {op} failed: HTTP {status} {code or ''}".rstrip())
