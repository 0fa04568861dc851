"""keybroker's KMS library: data-encryption keys by id, from a cluster secret or a cloud KEK.

``from_uris(kms_uri=..., storage_uri=...)`` takes Constellation's two URIs (see
:mod:`keybroker.kms.uri` for the syntax) and returns a :class:`KMS`:

- ``kms://cluster-kms?key=..&salt=..`` with ``storage://no-store`` (or no storage URI):
  a :class:`ClusterKMS`; a real storage URI is refused, since nothing would ever be stored;
- any other ``kms://`` (``local``, ``aws``, ``azure``, ``gcp``, or registered) with a storage
  URI: an :class:`ExternalKMS`; ``storage://no-store`` is refused.

Constellation-format blobs are read only with the migration setting: ``legacy_blobs="read"``,
or ``legacyBlobs=read`` on the storage URI (see :class:`ExternalKMS`).

Both URIs are parsed and their parameters checked before any backend object is built, and
backend objects do no I/O until first use (the wrapper's set-up runs before the storage's), so
a wrong KMS URI never creates a bucket.
"""

from __future__ import annotations

from keybroker.errors import KMSError
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.base import KMS, NO_OBSERVER, KeyWrapper, KMSObserver, WrappedKey
from keybroker.kms.cache import CachedKMS
from keybroker.kms.cluster import ClusterKMS, hkdf_sha256
from keybroker.kms.envelope import LEGACY_SETTINGS, LegacyBlobs, WriteFormat, open_dek, seal_dek
from keybroker.kms.errors import (
    BackendError,
    DEKExists,
    DEKNotFound,
    IntegrityError,
    KMSConfigError,
    MissingExtra,
)
from keybroker.kms.external import ExternalKMS
from keybroker.kms.registry import (
    load_storage_class,
    load_wrapper_class,
    register_storage,
    register_wrapper,
    storage_from_uri,
    validate_uri,
    wrapper_from_uri,
)
from keybroker.kms.rewrap import RewrapReport, rewrap_all
from keybroker.kms.uri import ParsedURI, parse_uri, resolve_secret

__all__ = [
    "KMS",
    "BackendError",
    "CachedKMS",
    "ClusterKMS",
    "DEKExists",
    "DEKNotFound",
    "ExternalKMS",
    "IntegrityError",
    "KMSConfigError",
    "KMSError",
    "KMSObserver",
    "KeyWrapper",
    "LegacyBlobs",
    "LocalKeyWrapper",
    "MissingExtra",
    "ParsedURI",
    "RewrapReport",
    "WrappedKey",
    "WriteFormat",
    "from_uris",
    "hkdf_sha256",
    "open_dek",
    "parse_uri",
    "register_storage",
    "register_wrapper",
    "resolve_secret",
    "rewrap_all",
    "seal_dek",
    "split_store_options",
    "storage_from_uri",
    "wrapper_from_uri",
]

_NO_STORE = "no-store"


def from_uris(
    *,
    kms_uri: str,
    storage_uri: str | None = None,
    write_format: WriteFormat = "keybroker",
    legacy_blobs: LegacyBlobs = "off",
    trusted_store: bool = False,
    min_salt_bytes: int = 1,
    observer: KMSObserver = NO_OBSERVER,
) -> KMS:
    """Build a KMS from Constellation-style URIs (see the module docstring).

    ``write_format``, ``legacy_blobs`` and ``trusted_store`` (or the storage URI's
    ``legacyBlobs=read``, ``trustedStore=true``) apply to an external KMS;
    ``min_salt_bytes`` to the cluster KMS (a key service passes 32); ``observer`` is told of
    an external KMS's operations (:class:`KMSObserver`; by default nobody is).  Raises
    ``KMSConfigError`` (the message names the URI and every bad parameter), ``MissingExtra``
    (a backend's SDK is not installed).
    """
    kms = _parse(kms_uri, "kms", "kms_uri")
    storage = _parse(storage_uri, "storage", "storage_uri") if storage_uri is not None else None
    if legacy_blobs not in LEGACY_SETTINGS:
        raise KMSConfigError("legacy_blobs must be 'off' or 'read'")
    if storage is not None:
        storage, options = split_store_options(storage)
        legacy_blobs = "read" if "read" in (legacy_blobs, options.get("legacyBlobs")) else "off"
        trusted_store = trusted_store is True or options.get("trustedStore") == "true"
    no_store = storage is None or storage.name == _NO_STORE
    if storage is not None and storage.name == _NO_STORE:
        storage.check_known()
    if kms.name == "cluster-kms":
        return _cluster(kms, no_store, min_salt_bytes)
    if no_store or storage is None:
        raise KMSConfigError(
            f"{kms.label} stores wrapped DEKs: it needs a storage URI, not storage://no-store"
        )
    wrapper_cls, storage_cls = load_wrapper_class(kms), load_storage_class(storage)
    validate_uri(wrapper_cls, kms)
    validate_uri(storage_cls, storage)
    wrapper = wrapper_from_uri(kms)  # KMS side first: its errors come before storage's
    return ExternalKMS(
        wrapper,
        storage_from_uri(storage),
        write_format=write_format,
        legacy_blobs=legacy_blobs,
        trusted_store=trusted_store,
        observer=observer,
    )


#: options every storage URI takes (they are the KMS's, not the backend's), and their values
_STORE_OPTIONS: dict[str, tuple[str, ...]] = {
    "legacyBlobs": LEGACY_SETTINGS,
    "trustedStore": ("false", "true"),
}


def split_store_options(storage: ParsedURI) -> tuple[ParsedURI, dict[str, str]]:
    """``storage`` without the KMS's own parameters (``legacyBlobs``, ``trustedStore``), and
    those.  Raises ``KMSConfigError`` for a value they do not take."""
    options = {k: v for k, v in storage.params.items() if k in _STORE_OPTIONS}
    for name, value in options.items():
        if value not in _STORE_OPTIONS[name]:
            allowed = " or ".join(repr(v) for v in _STORE_OPTIONS[name])
            raise KMSConfigError(f"{storage.label}: {name} must be {allowed}")
    rest = {k: v for k, v in storage.params.items() if k not in _STORE_OPTIONS}
    return ParsedURI(storage.scheme, storage.name, rest), options


def _parse(uri: str, scheme: str, arg: str) -> ParsedURI:
    parsed = parse_uri(uri)
    if parsed.scheme != scheme:
        raise KMSConfigError(f"{arg} must be a {scheme}:// URI, not {parsed.scheme}://")
    return parsed


def _cluster(kms: ParsedURI, no_store: bool, min_salt_bytes: int) -> ClusterKMS:
    ClusterKMS.validate_uri(kms)
    if not no_store:
        raise KMSConfigError(f"{kms.label} derives keys and stores nothing: use storage://no-store")
    return ClusterKMS.from_uri(kms, min_salt_bytes=min_salt_bytes)
