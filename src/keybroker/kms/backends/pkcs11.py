"""A PKCS#11 token (an HSM, SoftHSM2) as a key-encryption key:
``kms://pkcs11?module=&tokenLabel=&pin=&keyLabel=`` (optional ``create=true``).

The KEK is an AES secret key on the token, found by its label; it never leaves the token.
``wrap`` is ``C_Encrypt`` with ``CKM_AES_GCM`` (a random 12-byte IV chosen here, 128-bit tag)
and the caller's ``aad`` as the GCM additional data.  Wrapped form::

    iv (12 bytes) || ciphertext || tag (16 bytes)

``kek_id`` is ``<tokenLabel>/<keyLabel>`` and ``kek_version`` the key's ``CKA_ID`` in hex
(``noid`` for a key without one).  ``unwrap`` finds the key by that ``CKA_ID``, not by label, so
rotation is: give the new key the label (and a new ``CKA_ID``), relabel the old one — old blobs
still open with the old key.  (Key-wrap mechanisms such as ``CKM_AES_KEY_WRAP_PAD`` are
deterministic and take no associated data, hence GCM.)

With ``create=true`` a missing key is generated on the token (AES-256, sensitive, not
extractable, encrypt/decrypt only, a random 8-byte ``CKA_ID``); without it a missing key is a
configuration error.  ``pin`` may be an ``env:``/``file:`` reference.

PKCS#11 is synchronous: calls run in a worker thread, one logged-in session per (module, token)
per process, shared by every wrapper on that token.  python-pkcs11 initialises a module without
locking arguments (``C_Initialize(NULL)``), which tells it that the application never calls it
from two threads at once (SoftHSM2 then takes no locks of its own): every call into any module
of this process, from loading to closing a session, is made under one process-wide lock.  A
process is logged in to a token once (PKCS#11 login state is per application), so the first
wrapper's PIN is the one checked.  The module is loaded and
initialised once per process and never finalised.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

__all__ = ["PKCS11Wrapper"]

_REQUIRED = ("module", "tokenLabel", "pin", "keyLabel")
_IV_BYTES = 12
_TAG_BITS = 128
_TAG_BYTES = _TAG_BITS // 8
_NO_ID = "noid"
_HEX_RE = re.compile(r"(?:[0-9a-f]{2}){1,256}")
_UNWRAP_FAILED = "the wrapped key cannot be unwrapped"
# Failures of the device itself: never reported as a damaged blob.
_DEVICE_ERRORS = (
    "DeviceError",
    "DeviceMemory",
    "DeviceRemoved",
    "HostMemory",
    "SessionClosed",
    "SessionHandleInvalid",
    "TokenNotPresent",
    "UserNotLoggedIn",
)


def _import_sdk() -> Any:
    try:
        return importlib.import_module("pkcs11")
    except ImportError as exc:
        raise MissingExtra("PKCS#11 needs python-pkcs11: install keybroker[pkcs11]") from exc


@dataclass
class _TokenSession:
    """The process's one session on a token, shared by all wrappers using it."""

    session: Any
    users: int = 0


_LIBS: dict[str, Any] = {}
_SESSIONS: dict[tuple[str, str], _TokenSession] = {}
# Held for every call into a module and for the tables above (see the module docstring).
_CALLS = threading.Lock()


class PKCS11Wrapper:
    """An AES key on a PKCS#11 token; see the module docstring.

    Raises ``KMSConfigError`` for an empty argument, ``MissingExtra`` without python-pkcs11.
    """

    name: ClassVar[str] = "pkcs11"
    binds_aad: ClassVar[bool] = True

    def __init__(
        self, module: str, token_label: str, key_label: str, *, pin: Secret, create: bool = False
    ) -> None:
        given = (("module", module), ("tokenLabel", token_label), ("keyLabel", key_label))
        missing = [n for n, v in given if not v]
        if not pin:
            missing.append("pin")
        if missing:
            raise KMSConfigError(f"pkcs11: missing parameter(s): {', '.join(missing)}")
        self._sdk = _import_sdk()
        self._module, self._token_label, self._key_label = module, token_label, key_label
        self._pin, self._create = pin, create
        self.kek_id = f"{token_label}/{key_label}"
        self._shared: _TokenSession | None = None
        self._keys: dict[str, Any] = {}  # kek_version -> key object
        self._version: str | None = None
        self._open_lock = asyncio.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming every missing, unknown or malformed parameter."""
        parsed.check_known(*_REQUIRED, "create")
        parsed.require(*_REQUIRED)
        _parse_bool(parsed)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://pkcs11`` URI (the module is loaded by :meth:`open`).

        Raises ``KMSConfigError`` (bad parameter, unresolvable ``pin`` reference),
        ``MissingExtra``.
        """
        cls.validate_uri(parsed)
        p = parsed.params
        return cls(
            p["module"],
            p["tokenLabel"],
            p["keyLabel"],
            pin=resolve_secret(p["pin"], what=f"{parsed.label} pin"),
            create=_parse_bool(parsed),
        )

    async def open(self) -> None:
        """Load the module, log in, find (or create) the key; idempotent.

        Raises ``KMSConfigError`` (module not loadable, no such token, PIN refused, no such key
        and ``create`` off, several keys with the label, key unusable, no AES-GCM),
        ``BackendError`` (the device fails).
        """
        async with self._open_lock:
            if self._version is None:
                await asyncio.to_thread(self._open_sync)

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """AES-GCM encryption on the token, binding ``aad``.  Raises what :meth:`open`
        raises."""
        await self.open()
        iv = os.urandom(_IV_BYTES)
        version = self._version or _NO_ID
        key = self._keys.get(version)
        if key is None:  # closed by another task meanwhile
            raise BackendError("pkcs11: this wrapper was closed")
        sealed = await self._run("encrypt", key.encrypt, plaintext, iv, aad)
        return WrappedKey(self.kek_id, version, iv + bytes(sealed))

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """AES-GCM decryption on the token with the key whose ``CKA_ID`` is recorded.

        Raises ``IntegrityError`` (damaged blob, wrong ``aad``, unknown key id),
        ``BackendError`` (the device fails).
        """
        data = wrapped.ciphertext
        if len(data) < _IV_BYTES + _TAG_BYTES:
            raise IntegrityError(_UNWRAP_FAILED)
        await self.open()
        key = await asyncio.to_thread(self._key_for, wrapped.kek_version)
        iv, sealed = data[:_IV_BYTES], data[_IV_BYTES:]
        return bytes(await self._run("decrypt", key.decrypt, sealed, iv, aad))

    async def close(self) -> None:
        """Leave the shared session (the last wrapper closes it); idempotent.  A later call
        opens it again."""
        async with self._open_lock:
            shared, self._shared = self._shared, None
            self._keys.clear()
            self._version = None
            if shared is not None:
                await asyncio.to_thread(_release, (self._module, self._token_label), shared)

    def __repr__(self) -> str:
        return f"PKCS11Wrapper(kek_id={self.kek_id!r})"

    # -- worker-thread side --------------------------------------------------------------------

    def _open_sync(self) -> None:
        exc_mod = self._sdk.exceptions
        try:
            shared = _acquire(self._sdk, self._module, self._token_label, self._pin)
        except exc_mod.PKCS11Error as exc:
            raise self._open_error(exc) from exc
        try:
            with _CALLS:
                key = self._find_or_create(shared.session)
                version = _version_of(self._sdk, key)
        except BaseException as exc:
            _release((self._module, self._token_label), shared)
            if isinstance(exc, exc_mod.PKCS11Error):
                raise self._open_error(exc) from exc
            raise
        self._shared = shared
        self._version = version
        self._keys[version] = key

    def _find_or_create(self, session: Any) -> Any:
        sdk = self._sdk
        keys = _find_keys(sdk, session, sdk.Attribute.LABEL, self._key_label)
        if not keys:
            if not self._create:
                raise KMSConfigError(
                    f"pkcs11: no AES key labelled {self._key_label!r} on token "
                    f"{self._token_label!r} (add create=true to make one)"
                )
            return self._generate(session)
        if len(keys) > 1:
            raise KMSConfigError(
                f"pkcs11: several AES keys are labelled {self._key_label!r} on token "
                f"{self._token_label!r}"
            )
        _check_key(sdk, keys[0], self.kek_id)
        return keys[0]

    def _generate(self, session: Any) -> Any:
        sdk = self._sdk
        attr = sdk.Attribute
        template = {
            attr.SENSITIVE: True,
            attr.EXTRACTABLE: False,
            attr.PRIVATE: True,
            attr.WRAP: False,
            attr.UNWRAP: False,
        }
        return session.generate_key(
            sdk.KeyType.AES,
            256,
            id=os.urandom(8),
            label=self._key_label,
            store=True,
            capabilities=sdk.MechanismFlag.ENCRYPT | sdk.MechanismFlag.DECRYPT,
            template=template,
        )

    def _key_for(self, version: str) -> Any:
        """The key object for a recorded ``kek_version``.  Raises ``IntegrityError``."""
        key = self._keys.get(version)
        if key is not None:
            return key
        shared = self._require_session()
        if not _HEX_RE.fullmatch(version):
            raise IntegrityError(_UNWRAP_FAILED)
        key_id = bytes.fromhex(version)
        sdk = self._sdk
        try:
            with _CALLS:
                keys = _find_keys(sdk, shared.session, sdk.Attribute.ID, key_id)
        except sdk.exceptions.PKCS11Error as exc:
            raise BackendError(f"pkcs11 key lookup failed: {type(exc).__name__}") from exc
        if len(keys) != 1:
            raise IntegrityError(_UNWRAP_FAILED)
        self._keys[version] = keys[0]
        return keys[0]

    def _require_session(self) -> _TokenSession:
        if self._shared is None:
            raise BackendError("pkcs11: this wrapper was closed")
        return self._shared

    async def _run(self, op: str, fn: Any, data: bytes, iv: bytes, aad: bytes) -> Any:
        shared = self._require_session()
        sdk = self._sdk
        params = sdk.mechanisms.GCMParams(iv, aad, _TAG_BITS)

        def call() -> Any:
            with _CALLS:
                if shared.users <= 0:  # the session was closed meanwhile
                    raise BackendError("pkcs11: this wrapper was closed")
                return fn(data, mechanism=sdk.Mechanism.AES_GCM, mechanism_param=params)

        try:
            return await asyncio.to_thread(call)
        except sdk.exceptions.PKCS11Error as exc:
            name = type(exc).__name__
            if op == "decrypt" and name not in _DEVICE_ERRORS:
                # Tokens report a failed tag check variously (SoftHSM2: CKR_GENERAL_ERROR).
                raise IntegrityError(_UNWRAP_FAILED) from None
            raise BackendError(f"pkcs11 {op} failed: {name}") from exc

    def _open_error(self, exc: Any) -> Exception:
        name = type(exc).__name__
        where = f"token {self._token_label!r}"
        messages = {
            "NoSuchToken": f"pkcs11: no token labelled {self._token_label!r}",
            "MultipleTokensReturned": f"pkcs11: several tokens are labelled {self._token_label!r}",
            "PinIncorrect": f"pkcs11: the PIN for {where} was refused",
            "PinInvalid": f"pkcs11: the PIN for {where} was refused",
            "PinLenRange": f"pkcs11: the PIN for {where} was refused",
            "PinLocked": f"pkcs11: the PIN for {where} is locked",
            "PinExpired": f"pkcs11: the PIN for {where} has expired",
            "UserPinNotInitialized": f"pkcs11: {where} has no user PIN yet",
        }
        if name in messages:
            return KMSConfigError(messages[name])
        if name == "PKCS11Error" and "loading" in str(exc):
            return KMSConfigError(f"pkcs11: cannot load module {self._module}")
        return BackendError(f"pkcs11 open failed: {name}")


# -- the process-wide module and session table ----------------------------------------------


def _acquire(sdk: Any, module: str, token_label: str, pin: Secret) -> _TokenSession:
    with _CALLS:
        key = (module, token_label)
        shared = _SESSIONS.get(key)
        if shared is None:
            shared = _TokenSession(_login(sdk, _load(sdk, module), token_label, pin))
            _SESSIONS[key] = shared
        shared.users += 1
        return shared


def _release(key: tuple[str, str], shared: _TokenSession) -> None:
    with _CALLS:
        shared.users -= 1
        if shared.users > 0 or _SESSIONS.get(key) is not shared:
            return
        del _SESSIONS[key]
        # PKCS11Error is a RuntimeError: a session that is gone already has nothing to release.
        with contextlib.suppress(RuntimeError):
            shared.session.close()


def _load(sdk: Any, module: str) -> Any:
    # C_Initialize may run once per process, and a finalised module would end every session:
    # keep each module loaded for the life of the process.
    lib = _LIBS.get(module)
    if lib is None:
        lib = _LIBS[module] = sdk.lib(module)
    return lib


def _login(sdk: Any, lib: Any, token_label: str, pin: Secret) -> Any:
    token = lib.get_token(token_label=token_label)
    if sdk.Mechanism.AES_GCM not in token.slot.get_mechanisms():
        raise KMSConfigError(f"pkcs11: token {token_label!r} does not offer CKM_AES_GCM")
    try:
        return token.open(user_pin=pin.reveal(), rw=True)
    except sdk.exceptions.UserAlreadyLoggedIn:
        # Another part of this process logged in: its session state is ours too.
        return token.open(rw=True)


def _find_keys(sdk: Any, session: Any, attribute: Any, value: object) -> list[Any]:
    """Every AES secret key with ``attribute == value``.  The search is read to the end, so
    the token's find operation is always finished (``C_FindObjectsFinal``)."""
    query = {
        sdk.Attribute.CLASS: sdk.ObjectClass.SECRET_KEY,
        sdk.Attribute.KEY_TYPE: sdk.KeyType.AES,
        attribute: value,
    }
    return list(session.get_objects(query))


def _check_key(sdk: Any, key: Any, kek_id: str) -> None:
    attr = sdk.Attribute
    problems = [
        f"{what} is not allowed"
        for what, name in (("encryption", attr.ENCRYPT), ("decryption", attr.DECRYPT))
        if not key[name]
    ]
    if problems:
        raise KMSConfigError(f"pkcs11 key {kek_id!r} is not usable: {'; '.join(problems)}")


def _version_of(sdk: Any, key: Any) -> str:
    key_id = bytes(key[sdk.Attribute.ID] or b"")
    return key_id.hex() or _NO_ID


def _parse_bool(parsed: ParsedURI) -> bool:
    value = parsed.optional("create", "false")
    if value not in ("true", "false"):
        raise KMSConfigError(f"{parsed.label}: parameter create must be true or false")
    return value == "true"
