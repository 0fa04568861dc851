"""The gRPC client name from the certificate itself: a property over common names (any
unicode, any count) — accepted exactly when there is one, made of printable ASCII."""

from __future__ import annotations

import datetime
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.keyservice.client_identity import ClientIdentityError, common_name_of

_KEY = ec.generate_private_key(ec.SECP256R1())


def _pem(common_names: list[str]) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, v, _validate=False) for v in common_names]
    name = x509.Name([*attrs, x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tests")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _acceptable(value: str) -> bool:
    return 0 < len(value) <= 64 and all(" " <= c <= "~" for c in value) and value.strip() == value


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=70), min_size=0, max_size=3))
def test_one_printable_ascii_common_name_or_nothing(names: list[str]) -> None:
    pem = _pem(names)
    if len(names) == 1 and _acceptable(names[0]):
        assert common_name_of(pem) == names[0]
    else:
        with pytest.raises(ClientIdentityError) as caught:
            common_name_of(pem)
        # the refusal never echoes the name: one of two fixed messages
        assert str(caught.value) in (
            "the client certificate's common name must be 1 to 64 printable ASCII characters",
            f"the client certificate must have exactly one common name, not {len(names)}",
        )


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(ClientIdentityError):
        common_name_of(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
