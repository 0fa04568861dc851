"""Regenerate ``kb1.json``: sealed values built from the format description alone.

Run from the repository root: ``python tests/vectors/sealing/generate.py``.  This script uses
only ``hashlib``/``hmac`` (HKDF, RFC 5869) and ``cryptography``'s AES-GCM, never keybroker's
sealing code, so the tests compare two independent constructions of the same format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path

HERE = Path(__file__).parent
MASTER = bytes(range(32))  # the cluster KMS master secret
SALT = bytes(range(32, 64))

CASES = [
    ("ascii secret, Real.SecretKey", "acct", "Credentials.Real.SecretKey", "real/secret+key=0123"),
    ("proxy key", "acct", "Credentials.Proxy.SecretKey", "proxy-secret"),
    ("extra proxy", "prod-eu", "Credentials.AdditionalProxies[1].SecretKey", "extra"),
    ("unicode account and value", "kontö 北京", "Credentials.Real.AccessToken", "tökén ✓ 秘密"),
]


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


def lp(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def case(n: int, name: str, account: str, field: str, value: str) -> dict[str, str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    dek_id = f"seal/{account}"
    dek = hkdf(MASTER, SALT, dek_id.encode(), 32)
    nonce = hashlib.sha256(f"nonce {n}".encode()).digest()[:12]
    aad = b"keybroker-sealed\0" + b"\x01" + lp(dek_id) + lp(account) + lp(field)
    sealed = AESGCM(dek).encrypt(nonce, value.encode(), aad)
    payload = lp(dek_id) + nonce + sealed
    token = "kb1." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return {
        "name": name,
        "account": account,
        "field": field,
        "value": value,
        "dek_id": dek_id,
        "dek": dek.hex(),
        "nonce": nonce.hex(),
        "aad": aad.hex(),
        "token": token,
    }


def build() -> dict[str, object]:
    return {
        "source": "keybroker sealed-value format 1 (kb1), built from its description",
        "kms": {"cluster_master": MASTER.hex(), "cluster_salt": SALT.hex()},
        "vectors": [case(i, *c) for i, c in enumerate(CASES)],
    }


if __name__ == "__main__":
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    (HERE / "kb1.json").write_text(text, encoding="utf-8")
