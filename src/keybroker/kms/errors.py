"""Key-management errors: the subclasses of :class:`keybroker.errors.KMSError`, whose place
in keybroker's one exception tree is drawn in :mod:`keybroker.errors`.

``DEKNotFound`` is the one "not set" error of a storage; ``IntegrityError`` is one opaque
error for every blob that does not open (no detail leaked); ``BackendError`` wraps the SDK
error with ``raise ... from``.
"""

from __future__ import annotations

from keybroker.errors import KMSError

__all__ = [
    "BackendError",
    "DEKExists",
    "DEKNotFound",
    "IntegrityError",
    "KMSConfigError",
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
