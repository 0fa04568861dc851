"""Key-management errors.

::

    KMSError (keybroker.errors)
    ├── KMSConfigError      a KMS/storage URI or argument is invalid (names the parameter)
    ├── DEKNotFound         storage has no object for this id (the one "not set" error)
    ├── DEKExists           a create-only put found the id already stored (the race loser re-reads)
    ├── IntegrityError      a stored blob failed authentication, is truncated, is bound to another
    │                       id/size, or cannot be unwrapped — one opaque error, no detail leaked
    ├── BackendError        a cloud SDK / server call failed (wraps the SDK error with ``from``)
    └── MissingExtra        an optional SDK is not installed ("install keybroker[gcp]")
"""

from __future__ import annotations

from keybroker.errors import KMSError

__all__ = [
    "BackendError",
    "DEKExists",
    "DEKNotFound",
    "IntegrityError",
    "KMSConfigError",
    "KMSError",
    "MissingExtra",
]


class KMSConfigError(KMSError, ValueError):
    """A URI or argument is invalid; the message names every bad or missing parameter."""


class DEKNotFound(KMSError, KeyError):
    """No stored DEK for this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "DEK not found"


class DEKExists(KMSError):
    """A create-only write found the id already present."""


class IntegrityError(KMSError):
    """A stored blob could not be authenticated or unwrapped."""


class BackendError(KMSError):
    """A call to an external KMS or storage service failed."""


class MissingExtra(KMSError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""
