"""The name of a gRPC client, read from its certificate itself.

gRPC's ``x509_common_name`` property is a C string taken from the first common name: a
certificate with ``CN=platform-one\\0evil`` is reported as ``platform-one``, and one with two
common names is matched on whichever comes first.  So the name is taken from the verified peer
certificate (``x509_pem_cert``), parsed with ``cryptography``, and accepted only when the
subject holds **exactly one** common name made of printable ASCII (``0x20``-``0x7e``, no NUL,
no control character, no leading or trailing space), at most 64 characters (X.520's upper
bound).  Anything else is :class:`ClientIdentityError`, which the server answers with
``PERMISSION_DENIED``.

Subject alternative names are ignored: a client is named by its common name only, so a
certificate with a DNS or URI SAN ``platform-one`` and no common name is refused.
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["MAX_COMMON_NAME", "ClientIdentityError", "common_name_of"]

MAX_COMMON_NAME = 64


class ClientIdentityError(Exception):
    """The client certificate does not name one client; the message says why (no value)."""


def common_name_of(pem: bytes) -> str:
    """The one common name of the PEM certificate ``pem``.  Raises ``ClientIdentityError``."""
    try:
        # cryptography warns (rather than fails) on attributes over their X.520 length
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            names = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(
                NameOID.COMMON_NAME
            )
    except ValueError:
        raise ClientIdentityError("the client certificate cannot be parsed") from None
    if warned:
        raise _bad_name()
    if len(names) != 1:
        raise ClientIdentityError(
            f"the client certificate must have exactly one common name, not {len(names)}"
        )
    value = names[0].value
    if not isinstance(value, str) or not _printable(value):
        raise _bad_name()
    return value


def _bad_name() -> ClientIdentityError:
    return ClientIdentityError(
        f"the client certificate's common name must be 1 to {MAX_COMMON_NAME} printable "
        "ASCII characters"
    )


def _printable(value: str) -> bool:
    return (
        0 < len(value) <= MAX_COMMON_NAME
        and all(" " <= c <= "~" for c in value)
        and value.strip(" ") == value
    )
