"""HMAC-SHA256 under a prepared key, and the cache of derived signing keys built on it.

:class:`PreparedHmac` hashes a key's two padded blocks once instead of on every message;
:func:`prepared_hmac` keeps one for each recent key.  :class:`KeyCache` holds the signing keys
the V4-style schemes derive from a secret and a scope, keyed by a salted hash of the secret.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

__all__ = ["KeyCache", "PreparedHmac", "prepared_hmac"]

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class PreparedHmac:
    """HMAC-SHA256 under one key, its padded key blocks hashed once: the same digests as
    ``hmac.new(key, msg, hashlib.sha256)``, which pays for those two blocks on every call."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def __repr__(self) -> str:
        return "PreparedHmac(<key>)"

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, msg: bytes) -> str:
        return self.digest(msg).hex()


@functools.lru_cache(maxsize=256)
def prepared_hmac(key: bytes) -> PreparedHmac:
    """A :class:`PreparedHmac` for ``key`` (a derived signing key), from a small LRU."""
    return PreparedHmac(key)


class KeyCache:
    """Bounded LRU of derived signing keys, keyed by a salted hash of the secret and the
    scope; the salt is per cache, so an identity means nothing outside this process."""

    def __init__(self, derive: Callable[..., bytes], size: int = 256) -> None:
        self._derive = derive
        self._size = size
        self._salt = secrets.token_bytes(32)
        self._salted = PreparedHmac(self._salt)
        self._keys: OrderedDict[tuple[bytes | str, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyCache(size={self._size})"

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[bytes | str, ...]]:
        """The identities held (salted fingerprint first, then the scope)."""
        with self._lock:
            return iter(list(self._keys))

    def get(self, secret: bytes, *scope: str) -> bytes:
        """The key ``derive(secret, *scope)`` makes, from the cache when it holds it."""
        fingerprint = self._salted.digest(secret)  # HMAC-SHA256(salt, secret)
        ident: tuple[bytes | str, ...] = (fingerprint, *scope)
        with self._lock:
            found = self._keys.get(ident)
            if found is not None:
                self._keys.move_to_end(ident)
                return found
        key: bytes = self._derive(secret, *scope)
        with self._lock:
            self._keys[ident] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key
