"""Google service-account credentials for the Cloud KMS protocol fake: a key file the SDK
loads (a fresh RSA key), and the check of the self-signed JWT (RS256) the SDK's REST client
sends with it."""

from __future__ import annotations

import base64
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["service_account_file", "valid_jwt"]


def _unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def valid_jwt(token: str, trusted: dict[str, rsa.RSAPublicKey]) -> bool:
    try:
        header, payload, signature = token.split(".")
        claims = json.loads(_unb64url(payload))
        key = trusted[claims["iss"]]
        key.verify(
            _unb64url(signature),
            f"{header}.{payload}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        return bool(claims["exp"] > time.time())
    except (ValueError, KeyError, InvalidSignature):
        return False


def service_account_file(path: str, email: str) -> rsa.RSAPrivateKey:
    """Write a service-account JSON key file (fresh RSA key) to ``path``; return the key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        # Never contacted: REST clients send self-signed JWTs; a port-1 URL fails loudly.
        "token_uri": "http://127.0.0.1:1/token",
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    return key
