"""Write go_kms_wrapping.json: blobs byte-identical to what Constellation stores through each
go-kms-wrapping cloud wrapper (see keybroker.kms.gowrapping for the field table).

The envelope layer is real (AES-256-GCM of the DEK under the envelope key, no AAD); the
``wrapped_key`` bytes stand in for the cloud KMS's output (a KMS ciphertext blob, a GCP
ciphertext, a 256-byte RSA-OAEP result), since only the KMS can make them.  Run from the
repository root: ``python tests/vectors/constellation/generate.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tests.kms.gojson import blob_info

OUT = Path(__file__).with_name("go_kms_wrapping.json")


def det(label: str, size: int) -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{len(out)}".encode()).digest()
    return out[:size]


def vector(
    name: str, mechanism: int, key_id: str, wrapped: bytes, stored: bytes
) -> dict[str, object]:
    dek, envelope_key, iv = det(name + "/dek", 32), det(name + "/env", 32), det(name + "/iv", 12)
    ciphertext = AESGCM(envelope_key).encrypt(iv, dek, None)
    blob = blob_info(ciphertext, iv, mechanism=mechanism, key_id=key_id, wrapped_key=stored)
    return {
        "name": name,
        "blob": blob.decode(),
        "mechanism": mechanism,
        "key_id": key_id,
        "wrapped_key": wrapped.hex(),
        "iv": iv.hex(),
        "ciphertext": ciphertext.hex(),
        "envelope_key": envelope_key.hex(),
        "dek": dek.hex(),
    }


def main() -> None:
    aws = det("aws/blob", 184)
    gcp = det("gcp/blob", 113)
    rsa = det("azure/rsa", 256)
    legacy_text = base64.urlsafe_b64encode(rsa).rstrip(b"=")
    vectors = [
        vector(
            "awskms",
            1,
            "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            aws,
            aws,
        ),
        vector(
            "gcpckms",
            1,
            "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3",
            gcp,
            gcp,
        ),
        vector("azurekeyvault", 0, "0123456789abcdef0123456789abcdef", rsa, rsa),
        vector("azurekeyvault-legacy", 0, "fedcba9876543210fedcba9876543210", rsa, legacy_text),
    ]
    doc = {"source": __doc__.splitlines()[0], "vectors": vectors}
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
