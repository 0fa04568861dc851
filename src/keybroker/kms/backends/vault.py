"""OpenBao / HashiCorp Vault transit as a key-encryption key:
``kms://vault?address=&token=&keyName=`` (optional ``mount=transit``, ``namespace=``,
``caFile=``).

``wrap`` is ``POST <mount>/encrypt/<keyName>`` with the caller's ``aad`` sent as transit's
``associated_data``, so a blob read back with other associated data fails to decrypt.  The
answer ``vault:vN:<base64>`` is split: ``kek_version`` records ``vN`` (the key version that
encrypted) and ``ciphertext`` holds the decoded bytes (nonce, ciphertext and tag), so every bit
of the stored blob is covered by the AEAD tag.  ``unwrap`` rebuilds ``vault:vN:<base64>`` and
calls ``decrypt``.  After ``<mount>/keys/<keyName>/rotate`` new wraps use the new version and
old blobs stay readable (down to the key's ``min_decryption_version``); :meth:`rewrap` moves a
blob to the newest version.

Only AEAD key types are accepted (``aes128-gcm96``, ``aes256-gcm96``, ``chacha20-poly1305``,
``xchacha20-poly1305``), checked by :meth:`open` with a read of ``<mount>/keys/<keyName>``:
transit's ``encrypt`` would otherwise create a missing key on the fly, hiding a typo in the
name.  Convergent keys are refused (deterministic wrapping would show equal keys); derived keys
get a fixed derivation ``context`` (the associated data still binds each blob).

Token policy needed: ``read`` on ``<mount>/keys/<keyName>``, ``update`` on
``<mount>/encrypt/<keyName>``, ``<mount>/decrypt/<keyName>`` (and ``<mount>/rewrap/<keyName>``
for :meth:`rewrap`).  ``token`` may be an ``env:``/``file:`` reference; it is sent only in the
``X-Vault-Token`` header and never appears in a message.  ``VAULT_*`` / ``BAO_*`` environment
variables are never consulted.  HTTP goes through aiohttp (no extra dependency).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl
from typing import Any, ClassVar, Self

import aiohttp
import yarl

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

__all__ = ["AEAD_KEY_TYPES", "VaultTransitWrapper"]

#: transit key types that take ``associated_data``
AEAD_KEY_TYPES = frozenset(
    {"aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305"}
)
_REQUIRED = ("address", "token", "keyName")
_OPTIONAL = ("mount", "namespace", "caFile")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PATH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,127})*")
_VERSION_RE = re.compile(r"v([1-9][0-9]{0,9})")
_CIPHERTEXT_RE = re.compile(r"vault:(v[1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})")
# Derived keys need a context; the associated data already binds each blob to its id.
_DERIVE_CONTEXT = base64.b64encode(b"keybroker-kek").decode("ascii")
_MAX_RESPONSE = 1 << 20
_TIMEOUT = aiohttp.ClientTimeout(total=30)
_UNWRAP_FAILED = "the wrapped key cannot be unwrapped"


class VaultTransitWrapper:
    """A transit key of OpenBao or Vault; see the module docstring.

    Raises ``KMSConfigError`` for a bad address, mount, key name or namespace.
    """

    name: ClassVar[str] = "vault"
    binds_aad: ClassVar[bool] = True

    def __init__(
        self,
        address: str,
        key_name: str,
        *,
        token: Secret,
        mount: str = "transit",
        namespace: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._base = _check_address(address)
        _check_path("keyName", key_name, _NAME_RE)
        _check_path("mount", mount, _PATH_RE)
        if namespace is not None:
            _check_path("namespace", namespace, _PATH_RE)
        if not token:
            raise KMSConfigError("vault: token is empty")
        self.kek_id = f"{namespace}/{mount}/{key_name}" if namespace else f"{mount}/{key_name}"
        self._key_name, self._mount, self._namespace = key_name, mount, namespace
        self._token = token
        self._ssl = _ssl_context(ca_file) if ca_file else None
        self._session: aiohttp.ClientSession | None = None
        self._derived: bool | None = None
        self._open_lock = asyncio.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming every missing or unknown parameter."""
        parsed.check_known(*_REQUIRED, *_OPTIONAL)
        parsed.require(*_REQUIRED)
        for name in _OPTIONAL:
            parsed.optional(name)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://vault`` URI (no network I/O; the key is checked by :meth:`open`).

        Raises ``KMSConfigError`` (bad or missing parameter, unset ``env:`` token, unreadable
        ``file:`` token or ``caFile``).
        """
        cls.validate_uri(parsed)
        p = parsed.params
        return cls(
            p["address"],
            p["keyName"],
            token=resolve_secret(p["token"], what=f"{parsed.label} token"),
            mount=parsed.optional("mount", "transit") or "transit",
            namespace=parsed.optional("namespace"),
            ca_file=parsed.optional("caFile"),
        )

    async def open(self) -> None:
        """Read the key's settings once; idempotent.

        Raises ``KMSConfigError`` (no such key, token may not read it, unsuitable key type),
        ``BackendError`` (server unreachable, sealed, or failing).
        """
        async with self._open_lock:
            if self._derived is None:
                status, body = await self._request("GET", f"keys/{self._key_name}", None)
                if status != 200:
                    raise self._open_error(status)
                self._derived = _check_key(self.kek_id, _data(body))

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """Transit ``encrypt`` under the newest key version, binding ``aad``.

        Raises ``KMSConfigError`` (see :meth:`open`), ``BackendError``.
        """
        await self.open()
        payload = self._payload(plaintext=_b64(plaintext), associated_data=_b64(aad))
        data = await self._call("encrypt", payload)
        version, raw = _split_ciphertext(data.get("ciphertext"))
        return WrappedKey(self.kek_id, version, raw)

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """Transit ``decrypt`` of the recorded key version with ``aad``.

        Raises ``IntegrityError`` (damaged blob, wrong ``aad``, other key or version),
        ``KMSConfigError`` (the key is gone), ``BackendError``.
        """
        ciphertext = _join_ciphertext(wrapped)
        await self.open()
        payload = self._payload(ciphertext=ciphertext, associated_data=_b64(aad))
        data = await self._call("decrypt", payload)
        try:
            return base64.b64decode(str(data.get("plaintext", "")), validate=True)
        except (binascii.Error, ValueError):
            raise BackendError("vault decrypt failed: the answer is not base64") from None

    async def rewrap(self, wrapped: WrappedKey, aad: bytes) -> WrappedKey:
        """The same key wrapped under the newest key version.

        Without ``aad`` this is transit ``rewrap`` (the plaintext never leaves the server).
        Transit's ``rewrap`` does not take associated data, so with ``aad`` it is a ``decrypt``
        followed by an ``encrypt``, and the key passes through this process.  Raises what
        :meth:`unwrap` and :meth:`wrap` raise.
        """
        if aad:
            return await self.wrap(await self.unwrap(wrapped, aad), aad)
        ciphertext = _join_ciphertext(wrapped)
        await self.open()
        data = await self._call("rewrap", self._payload(ciphertext=ciphertext))
        version, raw = _split_ciphertext(data.get("ciphertext"))
        return WrappedKey(self.kek_id, version, raw)

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return f"VaultTransitWrapper(kek_id={self.kek_id!r})"

    # -- HTTP ----------------------------------------------------------------------------------

    def _payload(self, **fields: str) -> dict[str, str]:
        if self._derived:
            fields["context"] = _DERIVE_CONTEXT
        return fields

    async def _call(self, op: str, payload: dict[str, str]) -> dict[str, Any]:
        status, body = await self._request("POST", f"{op}/{self._key_name}", payload)
        if status == 200:
            return _data(body)
        raise _op_error(op, self.kek_id, status, _errors(body))

    async def _request(
        self, method: str, path: str, payload: dict[str, str] | None
    ) -> tuple[int, bytes]:
        url = yarl.URL(f"{self._base}/v1/{self._mount}/{path}", encoded=False)
        headers = {"X-Vault-Token": self._token.reveal(), "X-Vault-Request": "true"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        try:
            async with self._client().request(
                method, url, json=payload, headers=headers, ssl=self._ssl or True
            ) as resp:
                return resp.status, await _read_bounded(resp)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            what = path.partition("/")[0]
            raise BackendError(f"vault {what} failed: {type(exc).__name__}") from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Proxies from the environment are ignored: the URI names the server.
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=False)
        return self._session

    def _open_error(self, status: int) -> Exception:
        if status == 404:
            return KMSConfigError(f"vault transit key {self.kek_id!r} does not exist")
        if status == 403:
            return KMSConfigError(
                f"vault token may not read transit key {self.kek_id!r} "
                "(invalid token, or no read on <mount>/keys/<keyName>)"
            )
        return BackendError(f"vault key read failed: HTTP {status}")


# -- helpers ---------------------------------------------------------------------------------


def _check_address(address: str) -> yarl.URL:
    try:
        url = yarl.URL(address)
    except (ValueError, TypeError):
        raise KMSConfigError("vault: address must be an http:// or https:// URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise KMSConfigError("vault: address must be an http:// or https:// URL")
    if url.query_string or url.fragment or url.user or url.password:
        raise KMSConfigError("vault: address must not have a user, query or fragment")
    return url.with_path(url.path.rstrip("/"))


def _check_path(what: str, value: str, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        # Each segment starts with a letter or digit, so ".." can never climb out of the mount.
        raise KMSConfigError(
            f"vault: {what} must be letters, digits, '.', '_' and '-', starting with a letter "
            "or digit" + (" (segments separated by '/')" if pattern is _PATH_RE else "")
        )


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise KMSConfigError(f"vault: cannot load caFile {ca_file}: {type(exc).__name__}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, refusing more than ``_MAX_RESPONSE`` bytes (transit answers are tiny).
    Raises ``BackendError``."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > _MAX_RESPONSE:
            raise BackendError("vault answered with an oversized body")
    return bytes(body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _split_ciphertext(value: object) -> tuple[str, bytes]:
    """``vault:vN:<base64>`` -> (``vN``, raw bytes).  Raises ``BackendError``."""
    m = _CIPHERTEXT_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise BackendError("vault encrypt failed: the answer is not a vault:vN: ciphertext")
    try:
        raw = base64.b64decode(m[2], validate=True)
    except binascii.Error:
        raise BackendError("vault encrypt failed: the answer is not base64") from None
    if base64.b64encode(raw).decode("ascii") != m[2]:  # one spelling per ciphertext
        raise BackendError("vault encrypt failed: the answer is not canonical base64")
    return m[1], raw


def _join_ciphertext(wrapped: WrappedKey) -> str:
    """Rebuild transit's ciphertext string.  Raises ``IntegrityError`` for a version that is
    not ``vN`` or an empty ciphertext (nothing the server could decrypt)."""
    if not _VERSION_RE.fullmatch(wrapped.kek_version) or not wrapped.ciphertext:
        raise IntegrityError(_UNWRAP_FAILED)
    return f"vault:{wrapped.kek_version}:{_b64(wrapped.ciphertext)}"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _data(body: bytes) -> dict[str, Any]:
    data = _parse(body).get("data")
    if not isinstance(data, dict):
        raise BackendError("vault answered without a data object")
    return data


def _errors(body: bytes) -> list[str]:
    errors = _parse(body).get("errors")
    return [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []


def _check_key(kek_id: str, data: dict[str, Any]) -> bool:
    """Whether the key is derived.  Raises ``KMSConfigError`` for a key we cannot use."""
    problems = []
    key_type = data.get("type")
    if key_type not in AEAD_KEY_TYPES:
        problems.append(f"type {key_type} has no associated data (want {sorted(AEAD_KEY_TYPES)})")
    if not (data.get("supports_encryption") and data.get("supports_decryption")):
        problems.append("it does not support encryption and decryption")
    if data.get("convergent_encryption"):
        problems.append("convergent encryption is deterministic")
    if problems:
        raise KMSConfigError(f"vault transit key {kek_id!r} is not usable: {'; '.join(problems)}")
    return bool(data.get("derived"))


def _op_error(op: str, kek_id: str, status: int, errors: list[str]) -> Exception:
    # Transit's messages are fixed strings (no request values), but they are only matched
    # here, never copied into our messages.
    text = " ".join(errors).lower()
    if "encryption key not found" in text or status == 404:
        return KMSConfigError(f"vault transit key {kek_id!r} does not exist")
    if status == 403:
        return BackendError(f"vault {op} failed: permission denied (token invalid or not allowed)")
    if status == 400 and op in ("decrypt", "rewrap"):
        return IntegrityError(_UNWRAP_FAILED)
    if status == 503:
        return BackendError(f"vault {op} failed: the server is sealed or in standby")
    return BackendError(f"vault {op} failed: HTTP {status}")
