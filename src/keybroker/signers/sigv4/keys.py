"""SigV4 signing keys and signatures.

``kSigning`` is derived from the secret and the scope (date, region, service) through four
HMACs; the keys are kept in one small process-wide LRU, keyed by a salted hash of the secret.
:func:`signature` is the hex HMAC of the string to sign under such a key.
"""

from __future__ import annotations

import hashlib
import hmac

from keybroker.secret import Secret
from keybroker.signers.hmac_keys import KeyCache, prepared_hmac

__all__ = ["KEY_CACHE", "KEY_CACHE_SIZE", "signature", "signing_key"]

#: how many derived keys :data:`KEY_CACHE` holds
KEY_CACHE_SIZE = 256


def _derive_key(secret: bytes, prefix: str, date: str, region: str, service: str) -> bytes:
    derived = prefix.encode("utf-8") + secret
    for part in (date, region, service, "aws4_request"):
        derived = hmac.new(derived, part.encode("utf-8"), hashlib.sha256).digest()
    return derived


#: the process-wide LRU of derived signing keys
KEY_CACHE = KeyCache(_derive_key, KEY_CACHE_SIZE)


def signing_key(
    secret: Secret, date: str, region: str, service: str, *, prefix: str = "AWS4"
) -> bytes:
    """``kSigning`` for the scope, from a small LRU keyed by a salted hash of the secret."""
    return KEY_CACHE.get(secret.reveal_bytes(), prefix, date, region, service)


def signature(key: bytes, algorithm: str, timestamp: str, scope: str, creq: str) -> str:
    """Hex HMAC of the string to sign built from the canonical request ``creq``."""
    digest = hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()
    to_sign = "\n".join([algorithm, timestamp, scope, digest])
    return prepared_hmac(key).hexdigest(to_sign.encode("utf-8"))
