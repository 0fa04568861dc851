"""Key material configured by URI: file modes, strength, and ``keybroker kms keygen``.

- :func:`check_key_file` refuses a key file (``kms://local?keyFile=``, a ``file:`` reference
  for ``kms://cluster-kms``'s ``key``, such as the seal master secret) that group or others may
  read or write, unless the URI says ``allowReadableKeyFile=true`` (e.g. a Kubernetes secret
  volume mounted with its default mode 0644 in a single-user container).
- :func:`check_key_strength` applies :func:`keybroker.kms.strength.check_secret`.
- :func:`keygen` writes 32 random bytes to a new file, mode 0600, never over an existing name.
"""

from __future__ import annotations

import os
from pathlib import Path

from keybroker.kms.errors import KMSConfigError
from keybroker.kms.strength import check_secret
from keybroker.kms.uri import ParsedURI
from keybroker.private_files import UnsafeFileError, check_private, write_new

__all__ = [
    "ALLOW_READABLE",
    "KEYGEN_BYTES",
    "allow_readable",
    "check_key_file",
    "check_key_strength",
    "keygen",
]

ALLOW_READABLE = "allowReadableKeyFile"
KEYGEN_BYTES = 32


def allow_readable(parsed: ParsedURI) -> bool:
    """The URI's ``allowReadableKeyFile`` (``true``/``false``, default ``false``).  Raises
    ``KMSConfigError`` for another value."""
    value = parsed.optional(ALLOW_READABLE, "false")
    if value not in ("true", "false"):
        raise KMSConfigError(f"{parsed.label}: parameter {ALLOW_READABLE} must be true or false")
    return value == "true"


def check_key_file(parsed: ParsedURI, path: str, *, what: str) -> None:
    """Refuse the key file at ``path`` if group or others may read or write it (unless the URI
    allows it).  A missing file is left to the reader's own error.  Raises ``KMSConfigError``."""
    if allow_readable(parsed):
        return
    try:
        st = os.stat(path)
    except OSError:
        return  # the read that follows names the problem
    try:
        check_private(Path(path), st, what=what, override=f"{ALLOW_READABLE}=true in the URI")
    except UnsafeFileError as exc:
        raise KMSConfigError(f"{parsed.label}: {exc}") from None


def check_key_strength(parsed: ParsedURI, secret: bytes, *, what: str) -> None:
    """Refuse a weak configured key (see :mod:`keybroker.kms.strength`).  Raises
    ``KMSConfigError``."""
    check_secret(secret, f"{parsed.label}: {what}")


def keygen(path: str | os.PathLike[str]) -> None:
    """Write ``KEYGEN_BYTES`` random bytes to the new file ``path`` (0600, ``O_EXCL``, no link
    followed).  Raises ``FileExistsError`` if anything is there, ``OSError``."""
    write_new(Path(path), os.urandom(KEYGEN_BYTES), mode=0o600)
