"""A KMIP server's symmetric key as a key-encryption key:
``kms://kmip?host=&port=&certFile=&keyFile=&caFile=&keyID=`` (optional ``serverName=``).

The key stays on the server: ``wrap`` is the KMIP ``Encrypt`` operation (KMIP 1.4) with AES in
GCM mode, a random 12-byte IV chosen here, a 16-byte tag and the caller's ``aad`` as the
*authenticated encryption additional data*; ``unwrap`` is ``Decrypt`` with the same fields, so
the server checks the tag.  Wrapped form::

    iv (12 bytes) || ciphertext || tag (16 bytes)

``kek_id`` and ``kek_version`` are the key's *unique identifier*; ``unwrap`` uses the recorded
one.  Rotation: create a new key, point ``keyID`` at it; blobs wrapped by the old key still open
while that key stays active.

:meth:`open` checks with ``Get Attributes`` that the key is an active AES key whose usage mask
allows encrypt and decrypt.  The server must support KMIP 1.4 AEAD fields (PyKMIP 0.11 does);
a server that cannot do GCM with additional data is refused rather than wrapped around.

Transport: TLS 1.2 or newer, forward-secret AEAD cipher suites only, the server certificate
checked against ``caFile`` and its name against ``serverName`` (default: ``host``), and the
client certificate (``certFile``/``keyFile``) identifies us to the server.  One connection per
wrapper, used by one thread at a time; a dropped connection is re-opened once per call.
PyKMIP supplies only the message encoding (its own client does not check the server name).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import ssl
import struct
import threading
import types
import warnings
from typing import Any, ClassVar, Self

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import ParsedURI

__all__ = ["KMIPWrapper"]

_REQUIRED = ("host", "port", "certFile", "keyFile", "caFile", "keyID")
_IV_BYTES = 12
_TAG_BYTES = 16
_MAX_MESSAGE = 1 << 20
_RESPONSE_TAG = b"\x42\x00\x7b\x01"  # Response Message, a Structure
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_UNWRAP_FAILED = "the wrapped key cannot be unwrapped"
# Decrypt failures that mean "not this ciphertext / tag / aad" (PyKMIP says General Failure).
_INTEGRITY_REASONS = ("GENERAL_FAILURE", "CRYPTOGRAPHIC_FAILURE", "INVALID_FIELD")
_ATTRIBUTES = ("Object Type", "Cryptographic Algorithm", "State", "Cryptographic Usage Mask")


def _import_sdk() -> Any:
    """PyKMIP's message layer.  Raises ``MissingExtra``."""
    try:
        with warnings.catch_warnings():
            # Importing kmip loads its server-side SQLAlchemy models, which use an API
            # SQLAlchemy 2 marks as moved; nothing of that is used here.
            warnings.filterwarnings("ignore", message=r"The ``declarative_base\(\)`` function")
            importlib.import_module("kmip")
        return types.SimpleNamespace(
            enums=importlib.import_module("kmip.core.enums"),
            attributes=importlib.import_module("kmip.core.attributes"),
            utils=importlib.import_module("kmip.core.utils"),
            contents=importlib.import_module("kmip.core.messages.contents"),
            messages=importlib.import_module("kmip.core.messages.messages"),
            payloads=importlib.import_module("kmip.core.messages.payloads"),
        )
    except ImportError as exc:
        raise MissingExtra("KMIP needs pykmip: install keybroker[kmip]") from exc


class _Failed(Exception):
    """A KMIP operation answered with a failure status; ``reason`` is the enum name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KMIPWrapper:
    """An AES key on a KMIP server; see the module docstring.

    Raises ``KMSConfigError`` for a bad argument or unreadable certificate/key/CA file,
    ``MissingExtra`` without PyKMIP.
    """

    name: ClassVar[str] = "kmip"
    binds_aad: ClassVar[bool] = True

    def __init__(
        self,
        host: str,
        port: int,
        key_id: str,
        *,
        cert_file: str,
        key_file: str,
        ca_file: str,
        server_name: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not host or not key_id:
            raise KMSConfigError("kmip: host and keyID must not be empty")
        if not 0 < port < 65536:
            raise KMSConfigError("kmip: port must be 1..65535")
        self._kmip = _import_sdk()
        self.kek_id = key_id
        self._address = (host, port)
        self._server_name = server_name or host
        self._timeout = timeout
        self._ssl = _ssl_context(cert_file, key_file, ca_file)
        self._sock: ssl.SSLSocket | None = None
        self._lock = threading.Lock()
        self._checked = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming every missing, unknown or malformed parameter."""
        parsed.check_known(*_REQUIRED, "serverName")
        parsed.require(*_REQUIRED)
        parsed.optional("serverName")
        _parse_port(parsed)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://kmip`` URI: reads the certificate files, no network I/O.

        Raises ``KMSConfigError``, ``MissingExtra``.
        """
        cls.validate_uri(parsed)
        p = parsed.params
        return cls(
            p["host"],
            _parse_port(parsed),
            p["keyID"],
            cert_file=p["certFile"],
            key_file=p["keyFile"],
            ca_file=p["caFile"],
            server_name=parsed.optional("serverName"),
        )

    async def open(self) -> None:
        """Connect and check the key once; idempotent.

        Raises ``KMSConfigError`` (no such key or not ours, not an active AES key with
        encrypt/decrypt usage), ``BackendError`` (connection, TLS or server failure).
        """
        async with self._open_lock:
            if not self._checked:
                await asyncio.to_thread(self._check_key)
                self._checked = True

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """KMIP ``Encrypt`` (AES-GCM, ``aad`` authenticated).  Raises what :meth:`open`
        raises."""
        await self.open()
        iv = os.urandom(_IV_BYTES)
        payload = self._kmip.payloads.EncryptRequestPayload(
            unique_identifier=self.kek_id,
            cryptographic_parameters=self._gcm(),
            data=plaintext,
            iv_counter_nonce=iv,
            auth_additional_data=aad or None,
        )
        try:
            out = await asyncio.to_thread(self._call, "ENCRYPT", payload)
        except _Failed as exc:
            raise BackendError(f"KMIP Encrypt failed: {exc.reason}") from None
        tag = out.auth_tag
        if not out.data or not isinstance(tag, bytes) or len(tag) != _TAG_BYTES:
            raise BackendError("KMIP Encrypt failed: the server returned no 16-byte GCM tag")
        if out.unique_identifier != self.kek_id:
            raise BackendError("KMIP Encrypt failed: the server answered for another key")
        return WrappedKey(self.kek_id, self.kek_id, iv + out.data + tag)

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """KMIP ``Decrypt`` with the recorded key; the server checks tag and ``aad``.

        Raises ``IntegrityError`` (damaged blob, wrong ``aad``, unknown key), ``BackendError``.
        """
        data = wrapped.ciphertext
        if len(data) <= _IV_BYTES + _TAG_BYTES or not wrapped.kek_version:
            raise IntegrityError(_UNWRAP_FAILED)
        await self.open()
        payload = self._kmip.payloads.DecryptRequestPayload(
            unique_identifier=wrapped.kek_version,
            cryptographic_parameters=self._gcm(),
            data=data[_IV_BYTES:-_TAG_BYTES],
            iv_counter_nonce=data[:_IV_BYTES],
            auth_additional_data=aad or None,
            auth_tag=data[-_TAG_BYTES:],
        )
        try:
            out = await asyncio.to_thread(self._call, "DECRYPT", payload)
        except _Failed as exc:
            if exc.reason in (*_INTEGRITY_REASONS, "ITEM_NOT_FOUND"):
                raise IntegrityError(_UNWRAP_FAILED) from None
            raise BackendError(f"KMIP Decrypt failed: {exc.reason}") from None
        return bytes(out.data or b"")

    async def close(self) -> None:
        """Close the connection; idempotent (a later call connects again)."""
        await asyncio.to_thread(self._disconnect)

    def __repr__(self) -> str:
        return f"KMIPWrapper(kek_id={self.kek_id!r}, address={self._address!r})"

    # -- worker-thread side --------------------------------------------------------------------

    def _gcm(self) -> Any:
        k = self._kmip
        return k.attributes.CryptographicParameters(
            block_cipher_mode=k.enums.BlockCipherMode.GCM,
            cryptographic_algorithm=k.enums.CryptographicAlgorithm.AES,
            tag_length=_TAG_BYTES,
        )

    def _check_key(self) -> None:
        payload = self._kmip.payloads.GetAttributesRequestPayload(
            unique_identifier=self.kek_id, attribute_names=list(_ATTRIBUTES)
        )
        try:
            out = self._call("GET_ATTRIBUTES", payload)
        except _Failed as exc:
            if exc.reason in ("ITEM_NOT_FOUND", "PERMISSION_DENIED"):
                raise KMSConfigError(
                    f"KMIP key {self.kek_id!r} does not exist or this client may not use it"
                ) from None
            raise BackendError(f"KMIP Get Attributes failed: {exc.reason}") from None
        found = {a.attribute_name.value: a.attribute_value.value for a in out.attributes or []}
        problems = _key_problems(self._kmip.enums, found)
        if problems:
            raise KMSConfigError(f"KMIP key {self.kek_id!r} is not usable: {'; '.join(problems)}")

    def _call(self, operation: str, payload: Any) -> Any:
        """One request/response; a connection that turns out dead is re-opened once."""
        request = self._encode(operation, payload)
        with self._lock:
            for attempt in (1, 2):
                fresh = self._sock is None
                try:
                    raw = self._exchange(request)
                    break
                except (OSError, EOFError) as exc:
                    self._disconnect_locked()
                    if fresh or attempt == 2 or isinstance(exc, ssl.SSLCertVerificationError):
                        raise BackendError(
                            f"KMIP {operation} failed: {type(exc).__name__}"
                        ) from exc
        return self._decode(operation, raw)

    def _exchange(self, request: bytes) -> bytes:
        sock = self._connect()
        sock.sendall(request)
        head = _recv_exact(sock, 8)
        if head[:4] != _RESPONSE_TAG:
            raise EOFError("not a KMIP response")
        (length,) = struct.unpack(">I", head[4:])
        if length > _MAX_MESSAGE:
            raise EOFError("KMIP response too large")
        return head + _recv_exact(sock, length)

    def _connect(self) -> ssl.SSLSocket:
        if self._sock is None:
            raw = socket.create_connection(self._address, timeout=self._timeout)
            try:
                self._sock = self._ssl.wrap_socket(raw, server_hostname=self._server_name)
            except BaseException:
                raw.close()
                raise
        return self._sock

    def _disconnect(self) -> None:
        with self._lock:
            self._disconnect_locked()

    def _disconnect_locked(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _encode(self, operation: str, payload: Any) -> bytes:
        k = self._kmip
        contents, messages = k.contents, k.messages
        header = messages.RequestHeader(
            protocol_version=contents.ProtocolVersion(1, 4),
            batch_count=contents.BatchCount(1),
        )
        item = messages.RequestBatchItem(
            operation=contents.Operation(getattr(k.enums.Operation, operation)),
            request_payload=payload,
        )
        stream = k.utils.BytearrayStream()
        messages.RequestMessage(request_header=header, batch_items=[item]).write(
            stream, k.enums.KMIPVersion.KMIP_1_4
        )
        return bytes(stream.buffer)

    def _decode(self, operation: str, raw: bytes) -> Any:
        k = self._kmip
        response = k.messages.ResponseMessage()
        try:
            response.read(k.utils.BytearrayStream(raw), k.enums.KMIPVersion.KMIP_1_4)
            (item,) = response.batch_items
        except Exception as exc:  # PyKMIP raises a mix of its own and builtin errors
            raise BackendError(f"KMIP {operation} failed: malformed response") from exc
        if item.result_status.value != k.enums.ResultStatus.SUCCESS:
            reason = item.result_reason.value.name if item.result_reason else "UNKNOWN"
            raise _Failed(str(reason))
        if item.response_payload is None:
            raise BackendError(f"KMIP {operation} failed: empty response")
        return item.response_payload


# -- helpers ---------------------------------------------------------------------------------


def _ssl_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """Raises ``KMSConfigError`` naming the file that could not be used."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise KMSConfigError(f"kmip: cannot load caFile {ca_file}: {type(exc).__name__}") from None
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KMSConfigError(
            f"kmip: cannot load certFile {cert_file} with keyFile {key_file}: {type(exc).__name__}"
        ) from None
    return ctx


def _recv_exact(sock: ssl.SSLSocket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            raise EOFError("connection closed by the KMIP server")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _key_problems(enums: Any, found: dict[str, Any]) -> list[str]:
    problems = []
    if found.get("Object Type") != enums.ObjectType.SYMMETRIC_KEY:
        problems.append("not a symmetric key")
    if found.get("Cryptographic Algorithm") != enums.CryptographicAlgorithm.AES:
        problems.append("not an AES key")
    if found.get("State") != enums.State.ACTIVE:
        problems.append("not in the Active state")
    mask = int(found.get("Cryptographic Usage Mask") or 0)
    usage = enums.CryptographicUsageMask
    if not (mask & usage.ENCRYPT.value and mask & usage.DECRYPT.value):
        problems.append("its usage mask does not allow encrypt and decrypt")
    return problems


def _parse_port(parsed: ParsedURI) -> int:
    value = parsed.params.get("port", "")
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 65536:
        raise KMSConfigError(f"{parsed.label}: parameter port must be 1..65535")
    return int(value)
