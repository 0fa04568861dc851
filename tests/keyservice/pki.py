"""A throw-away certificate authority for the TLS tests: CA, server and client certificates
(more client certificates on demand: :func:`issue_client`)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # issued by another CA
    other_client_key: Path
    ca_key: Path  # to issue more client certificates (issue_client)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    cn: str | x509.Name,
    *,
    server: bool,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(cn if isinstance(cn, x509.Name) else _name(cn))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca[0], hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_pki(directory: Path) -> Pki:
    ca, other = _ca("keybroker test CA"), _ca("another CA")
    files: dict[str, bytes] = {"ca.pem": ca[1].public_bytes(serialization.Encoding.PEM)}
    files["server.pem"], files["server.key"] = _leaf(ca, "keybroker-grpc", server=True)
    files["client.pem"], files["client.key"] = _leaf(ca, "platform-one", server=False)
    files["other.pem"], files["other.key"] = _leaf(other, "intruder", server=False)
    files["ca.key"] = _key_pem(ca[0])
    for name, data in files.items():
        (directory / name).write_bytes(data)
    d = directory
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other.pem",
        d / "other.key",
        d / "ca.key",
    )


def issue_client(
    pki: Pki,
    cn: str | x509.Name,
    *,
    tag: str = "",
    sans: list[x509.GeneralName] | None = None,
) -> tuple[Path, Path]:
    """A client certificate and key from the test CA (files next to the CA's): for common
    name ``cn``, or for the subject ``cn`` as given (any attributes, in any number; then
    ``tag`` names the files), with subject alternative names ``sans``."""
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the test CA key is not an EC key")
    cert_pem, key_pem = _leaf(
        (key, x509.load_pem_x509_certificate(pki.ca.read_bytes())), cn, server=False, sans=sans
    )
    stem = tag or str(cn)
    cert, private = pki.ca.parent / f"client-{stem}.pem", pki.ca.parent / f"client-{stem}.key"
    cert.write_bytes(cert_pem)
    private.write_bytes(key_pem)
    return cert, private
