"""keybroker's KMS library: data-encryption keys by id, from a cluster secret or a cloud KEK."""

from __future__ import annotations

from keybroker.kms.base import KMS, KeyWrapper, WrappedKey
from keybroker.kms.errors import (
    BackendError,
    DEKExists,
    DEKNotFound,
    IntegrityError,
    KMSConfigError,
    KMSError,
    MissingExtra,
)
from keybroker.kms.registry import (
    register_storage,
    register_wrapper,
    storage_from_uri,
    wrapper_from_uri,
)
from keybroker.kms.uri import ParsedURI, parse_uri, resolve_secret

__all__ = [
    "KMS",
    "BackendError",
    "DEKExists",
    "DEKNotFound",
    "IntegrityError",
    "KMSConfigError",
    "KMSError",
    "KeyWrapper",
    "MissingExtra",
    "ParsedURI",
    "WrappedKey",
    "parse_uri",
    "register_storage",
    "register_wrapper",
    "resolve_secret",
    "storage_from_uri",
    "wrapper_from_uri",
]
