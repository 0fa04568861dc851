"""Registries: URI backend name -> ``"module:Class"``, imported lazily.

Each registered class has

- ``from_uri(parsed: ParsedURI) -> Self`` (classmethod): check every parameter first (raise
  ``KMSConfigError`` naming all missing / unknown ones, see :class:`ParsedURI`), then build the
  object.  It must do **no network I/O and no side effect** (no bucket creation, no key check):
  ``from_uris`` builds the KMS-side object before the storage, and a wrong KMS URI must fail
  before anything touches storage.
- optionally ``validate_uri(parsed: ParsedURI) -> None`` (classmethod, :class:`ValidatesURI`):
  the parameter checks alone; ``from_uris`` calls it for both URIs before building either
  object.
- optionally ``async open(self) -> None`` (:class:`~keybroker.kms.base.Openable`): network
  set-up (DescribeKey, bucket creation).  ``ExternalKMS`` awaits it once before first use — the
  wrapper's before the storage's.

An import error of a backend's SDK becomes ``MissingExtra("... install keybroker[<extra>]")``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from keybroker.kms.base import KeyWrapper
from keybroker.kms.errors import KMSConfigError, MissingExtra
from keybroker.kms.storage.base import Storage
from keybroker.kms.uri import ParsedURI

__all__ = [
    "ValidatesURI",
    "load_storage_class",
    "load_wrapper_class",
    "register_storage",
    "register_wrapper",
    "storage_from_uri",
    "storage_names",
    "validate_uri",
    "wrapper_from_uri",
    "wrapper_names",
]

#: storage://<name> -> class; ``no-store`` is handled by ``from_uris`` (it stores nothing).
_STORAGE: dict[str, str] = {
    "memory": "keybroker.kms.storage.memory:MemoryStorage",
    "file": "keybroker.kms.storage.file:FileStorage",
    "aws": "keybroker.kms.storage.s3:S3Storage",
    "gcp": "keybroker.kms.storage.gcs:GCSStorage",
    "azure": "keybroker.kms.storage.azure_blob:AzureBlobStorage",
}

#: kms://<name> -> KeyWrapper class; ``cluster-kms`` is handled by ``from_uris`` (no wrapper).
_WRAPPERS: dict[str, str] = {
    "local": "keybroker.kms.backends.local:LocalKeyWrapper",
    "aws": "keybroker.kms.backends.aws:AWSKMSWrapper",
    "azure": "keybroker.kms.backends.azure:AzureKeyVaultWrapper",
    "gcp": "keybroker.kms.backends.gcp:GCPKMSWrapper",
    "vault": "keybroker.kms.backends.vault:VaultTransitWrapper",
    "pkcs11": "keybroker.kms.backends.pkcs11:PKCS11Wrapper",
    "kmip": "keybroker.kms.backends.kmip:KMIPWrapper",
}

#: backend name -> the pip extra that brings its SDK
_EXTRAS: dict[str, str] = {
    "aws": "aws",
    "gcp": "gcp",
    "azure": "azure",
    "pkcs11": "pkcs11",
    "kmip": "kmip",
}

_SPECIAL = {"storage": ("no-store",), "kms": ("cluster-kms",)}


def register_storage(name: str, target: str, *, extra: str | None = None) -> None:
    """Map ``storage://<name>`` to ``"module:Class"``; ``extra`` names its pip extra."""
    _register(_STORAGE, name, target, extra)


def register_wrapper(name: str, target: str, *, extra: str | None = None) -> None:
    """Map ``kms://<name>`` to ``"module:Class"`` (a ``KeyWrapper``)."""
    _register(_WRAPPERS, name, target, extra)


def _register(table: dict[str, str], name: str, target: str, extra: str | None) -> None:
    module, sep, attr = target.partition(":")
    if not (module and sep and attr):
        raise ValueError("target must be 'module:Class'")
    table[name] = target
    if extra:
        _EXTRAS[name] = extra


def storage_names() -> list[str]:
    """Every ``storage://`` name, sorted (``no-store`` included)."""
    return sorted([*_STORAGE, *_SPECIAL["storage"]])


def wrapper_names() -> list[str]:
    """Every ``kms://`` name, sorted (``cluster-kms`` included)."""
    return sorted([*_WRAPPERS, *_SPECIAL["kms"]])


def load_storage_class(parsed: ParsedURI) -> type[Any]:
    """The class for ``storage://<name>``.  Raises ``KMSConfigError`` (wrong scheme, unknown
    name) or ``MissingExtra``."""
    return _load(_STORAGE, "storage", parsed)


def load_wrapper_class(parsed: ParsedURI) -> type[Any]:
    """The class for ``kms://<name>``.  Raises ``KMSConfigError`` or ``MissingExtra``."""
    return _load(_WRAPPERS, "kms", parsed)


@runtime_checkable
class ValidatesURI(Protocol):
    """A backend class that can check a URI's parameters without building anything."""

    def validate_uri(self, parsed: ParsedURI) -> None:
        """(A classmethod.)  Raises ``KMSConfigError`` naming every missing, unknown or bad
        parameter; no I/O, no side effect."""
        ...


def validate_uri(cls: type[Any], parsed: ParsedURI) -> None:
    """Run the class's side-effect-free ``validate_uri`` if it has one."""
    if isinstance(cls, ValidatesURI):
        cls.validate_uri(parsed)


def storage_from_uri(parsed: ParsedURI) -> Storage:
    """Build the storage named by ``parsed`` (no I/O).  Raises ``KMSConfigError``,
    ``MissingExtra``."""
    obj = load_storage_class(parsed).from_uri(parsed)
    if not isinstance(obj, Storage):
        raise TypeError(f"{parsed.label}: from_uri did not return a Storage")
    return obj


def wrapper_from_uri(parsed: ParsedURI) -> KeyWrapper:
    """Build the key wrapper named by ``parsed`` (no I/O).  Raises ``KMSConfigError``,
    ``MissingExtra``."""
    obj = load_wrapper_class(parsed).from_uri(parsed)
    if not isinstance(obj, KeyWrapper):
        raise TypeError(f"{parsed.label}: from_uri did not return a KeyWrapper")
    return obj


def _load(table: dict[str, str], scheme: str, parsed: ParsedURI) -> type[Any]:
    if parsed.scheme != scheme:
        raise KMSConfigError(f"expected a {scheme}:// URI, got {parsed.scheme}://")
    if parsed.name in _SPECIAL[scheme]:
        raise KMSConfigError(f"{parsed.label} is not a {_KIND[scheme]} backend")
    target = table.get(parsed.name)
    if target is None:
        known = ", ".join(sorted([*table, *_SPECIAL[scheme]]))
        raise KMSConfigError(f"{parsed.label}: unknown {_KIND[scheme]} backend (known: {known})")
    return _import(target, parsed.label, _EXTRAS.get(parsed.name))


_KIND = {"storage": "storage", "kms": "key-wrapping"}


def _import(target: str, label: str, extra: str | None) -> type[Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingExtra:
        raise
    except ImportError as exc:
        missing = exc.name or "a dependency"
        if missing == "keybroker" or missing.startswith("keybroker."):
            raise MissingExtra(f"{label}: {target} is not available in this installation") from exc
        hint = f"install keybroker[{extra}]" if extra else f"install {missing}"
        raise MissingExtra(f"{label} needs {missing}: {hint}") from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise MissingExtra(f"{label}: {target} is not available in this installation")
    return cls
