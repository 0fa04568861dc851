"""Is a configured master secret or key-encryption key random enough to hold keys?

:func:`check_secret` refuses, with a message naming the rule and never the value:

- every byte the same (all zero, all ``0xff``, ``"AAAA..."``);
- a short pattern repeated (a period of at most half the length: ``abab...``,
  ``0123456701234567``);
- few distinct bytes for its length (fewer than a quarter of ``min(len, 64)``): random 16 bytes
  have about 15;
- a printable value that is mostly words and runs a person would type: after taking out common
  words (``password``, ``secret``, ``changeme``, ``admin``, ...), ascending or descending runs
  of 4+ characters (``1234``, ``abcd``, ``9876``), keyboard rows (``qwerty``, ``asdf``) and
  a character three times in a row, fewer than 12 characters are left (``password12345678``,
  ``changeme-secret!``).

Random bytes pass all of them with overwhelming probability; so do base64 or hex strings of
random bytes.  The check applies where a secret is configured for use (``kms://cluster-kms``,
``kms://local`` from a URI), not to the library's derivation functions, whose published test
vectors use all-zero secrets.
"""

from __future__ import annotations

import itertools

from keybroker.kms.errors import KMSConfigError

__all__ = ["MIN_UNGUESSABLE_CHARS", "check_secret", "weakness"]

MIN_UNGUESSABLE_CHARS = 12

_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "changeme",
    "change",
    "default",
    "admin",
    "master",
    "letmein",
    "welcome",
    "example",
    "sample",
    "test",
    "demo",
    "dummy",
    "keybroker",
    "constellation",
    "token",
    "login",
    "root",
    "user",
    "guest",
    "hello",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "shadow",
    "sunshine",
    "princess",
    "trustno",
    "qwerty",
    "qwertz",
    "azerty",
    "asdf",
    "zxcv",
    "1q2w3e",
    "pass",
    "word",
    "salt",
    "data",
    "encrypt",
    "private",
    "public",
)
_RUN = 4
_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def check_secret(secret: bytes, what: str) -> None:
    """Raise ``KMSConfigError`` naming ``what`` and the rule if ``secret`` looks weak."""
    why = weakness(secret)
    if why is not None:
        raise KMSConfigError(f"{what} is too weak: {why}; generate a random one")


def weakness(secret: bytes) -> str | None:
    """Why ``secret`` is weak, or ``None``."""
    if not secret:
        return "it is empty"
    if len(set(secret)) == 1:
        return "every byte is the same"
    period = _period(secret)
    if period is not None:
        return f"it repeats a {period}-byte pattern"
    if len(set(secret)) < min(len(secret), 64) // 4:
        return "it has too few distinct bytes"
    if _printable(secret) and _unguessable(secret.decode("ascii").lower()) < MIN_UNGUESSABLE_CHARS:
        return "it is made of words, sequences or repeats a person would type"
    return None


def _period(secret: bytes) -> int | None:
    for p in range(1, len(secret) // 2 + 1):
        if all(secret[i] == secret[i % p] for i in range(len(secret))):
            return p
    return None


def _printable(secret: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in secret)


def _unguessable(text: str) -> int:
    """How many characters of ``text`` are not covered by a word, a run or a repeat."""
    covered = [False] * len(text)
    for word in _WORDS:
        _cover_all(text, word, covered)
    for i in range(len(text)):
        if _is_run(text[i : i + _RUN]):
            covered[i : i + _RUN] = [True] * _RUN
        if i > 1 and text[i] == text[i - 1] == text[i - 2]:
            covered[i - 2 : i + 1] = [True] * 3
    return covered.count(False)


def _cover_all(text: str, word: str, covered: list[bool]) -> None:
    start = text.find(word)
    while start >= 0:
        for i in range(start, start + len(word)):
            covered[i] = True
        start = text.find(word, start + 1)


def _is_run(chunk: str) -> bool:
    """``_RUN`` characters in steps of +1 or -1 (``abcd``, ``4321``) or along a keyboard
    row (``qwer``, ``lkjh``)."""
    if len(chunk) < _RUN:
        return False
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(chunk)}
    if steps in ({1}, {-1}):
        return True
    return any(chunk in row or chunk[::-1] in row for row in _ROWS)
