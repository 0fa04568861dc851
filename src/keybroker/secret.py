"""A wrapper for secret values whose repr and str never show them."""

from __future__ import annotations

import hmac

__all__ = ["Secret", "constant_time_equal"]


class Secret:
    """Holds a secret string; ``str()``/``repr()`` print ``Secret('***')``.

    Use :meth:`reveal` at the single place the value is really needed (a HMAC key).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def reveal_bytes(self) -> bytes:
        return self._value.encode("utf-8")

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal_bytes(), other.reveal_bytes())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values cannot be pickled")


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare two strings or byte strings in time independent of where they differ."""
    ab = a.encode("utf-8", "surrogateescape") if isinstance(a, str) else a
    bb = b.encode("utf-8", "surrogateescape") if isinstance(b, str) else b
    return hmac.compare_digest(ab, bb)
