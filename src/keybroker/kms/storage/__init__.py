"""Storage backends for wrapped DEKs, and the key-id and blob rules every backend shares.

Valid key ids (checked by :func:`validate_key_id`, in every backend, before any I/O):

- a ``str`` of 1 to 256 UTF-8 bytes (S3, GCS and Azure allow 1024; 256 leaves room for the
  file backend's escaping and for prefixes);
- no control characters (C0, DEL, C1), no backslash (Azure turns it into ``/``);
- ``/`` separates segments: no leading or trailing ``/``, no empty segment, and no segment
  that ends with ``.`` (so never ``.`` or ``..``; Azure also drops trailing dots).
- anything else is allowed: unicode, dots inside, ``-``, ``_``, spaces, ``?``, ``#``, ``%``.

Blobs (:func:`validate_blob`) are ``bytes`` of 1 byte to 64 KiB: a wrapped DEK is never empty
and never large, so an empty or huge blob is a bug caught at the door.

Storage sits below the rest of the KMS: modules here import only :mod:`keybroker.kms.errors`,
:mod:`keybroker.kms.uri` and each other.  The registry that maps ``storage://<name>`` to a class
(``storage_from_uri``, ``register_storage``) is :mod:`keybroker.kms.registry`, above them.
"""

from __future__ import annotations

import unicodedata

from keybroker.kms.storage.base import Storage

__all__ = [
    "MAX_BLOB_BYTES",
    "MAX_KEY_ID_BYTES",
    "Storage",
    "validate_blob",
    "validate_key_id",
    "validate_prefix",
]

MAX_KEY_ID_BYTES = 256
MAX_BLOB_BYTES = 64 * 1024


def validate_key_id(key_id: object) -> str:
    """Return ``key_id`` if valid (rules in the module docstring).  Raises ``TypeError`` for a
    non-str, ``ValueError`` with the exact rule broken otherwise."""
    if not isinstance(key_id, str):
        raise TypeError("key id must be a str")
    if not key_id:
        raise ValueError("key id must not be empty")
    try:
        size = len(key_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("key id must be valid unicode (no lone surrogates)") from None
    if size > MAX_KEY_ID_BYTES:
        raise ValueError(f"key id must be at most {MAX_KEY_ID_BYTES} UTF-8 bytes")
    if any(unicodedata.category(ch) == "Cc" for ch in key_id):
        raise ValueError("key id must not contain control characters")
    if "\\" in key_id:
        raise ValueError("key id must not contain a backslash")
    _check_segments(key_id)
    return key_id


def _check_segments(key_id: str) -> None:
    for segment in key_id.split("/"):
        if not segment:
            raise ValueError("key id must not start or end with '/' or contain '//'")
        if segment.endswith("."):
            raise ValueError("key id segments must not end with '.' (no '.' or '..')")


def validate_blob(data: object) -> bytes:
    """Return ``data`` as ``bytes`` if it is a valid blob.  Raises ``TypeError`` or
    ``ValueError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("blob must be bytes")
    blob = bytes(data)
    if not blob:
        raise ValueError("blob must not be empty")
    if len(blob) > MAX_BLOB_BYTES:
        raise ValueError(f"blob must be at most {MAX_BLOB_BYTES} bytes")
    return blob


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a str (any str, even ``""``).  Raises ``TypeError``."""
    if not isinstance(prefix, str):
        raise TypeError("prefix must be a str")
    return prefix
