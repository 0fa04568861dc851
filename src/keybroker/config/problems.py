"""How configuration problems are collected and told, and the value checks every section uses.

A :class:`Problems` gathers each problem with the line of the YAML node it is about (when there
is one), skips later checks of a path that already failed, and raises them together as one
``ConfigError``.  :func:`clip` makes a non-secret value fit for a message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from keybroker.errors import ConfigError

__all__ = [
    "MAX_PROBLEMS",
    "Problems",
    "address_problem",
    "clip",
    "is_type",
    "positive",
    "readable_problem",
]

MAX_PROBLEMS = 100


# --- problem collection ----------------------------------------------------------------------


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def clip(text: str, limit: int = 40) -> str:
    """A non-secret value fit for a message: one line, bounded length."""
    flat = "".join(c if c.isprintable() else "?" for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class Problems:
    """Problems in the order found; each with the line of the YAML node it is about."""

    source: str | None = None
    lines: dict[str, int] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    found: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, path: str, message: str, line: int | None = None) -> None:
        """Record a problem with ``path``; later checks of the same path are skipped."""
        self.failed.add(path)
        if line is None:
            line = self._line_of(path)
        where = (
            "" if self.source is None else f"{self.source}:{line}: " if line else f"{self.source}: "
        )
        label = f"{path}: " if path else ""
        self.found.append((line or 1 << 30, len(self.found), f"{where}{label}{message}"))

    def check(self, path: str, message: str) -> None:
        """A later problem: dropped if one was already found at ``path`` or a parent."""
        probe = path
        while probe:
            if probe in self.failed:
                return
            probe = _parent(probe)
        self.add(path, message)

    def _line_of(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = _parent(path)
        return self.lines.get("")

    def raise_if_any(self) -> None:
        """Raises ``ConfigError`` with every problem, ordered by line."""
        if not self.found:
            return
        texts = [text for _, _, text in sorted(self.found)]
        if len(texts) > MAX_PROBLEMS:
            extra = len(texts) - MAX_PROBLEMS
            texts = [*texts[:MAX_PROBLEMS], f"... and {extra} more problems"]
        raise ConfigError(texts)


# --- value checks shared by the sections ----------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_HOST = re.compile(r"[A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]")


def address_problem(address: object) -> str | None:
    """What is wrong with a ``host:port`` listen address, or ``None``."""
    if not isinstance(address, str):
        return "expected a string"
    host, sep, port = address.rpartition(":")
    if sep and _PORT.fullmatch(port) and 1 <= int(port) <= 65535 and _HOST.fullmatch(host):
        return None
    return f"expected 'host:port' or ':port' with a port 1-65535, got '{clip(address)}'"


def positive(p: Problems, path: str, value: object, *, integer: bool) -> None:
    """Record a problem at ``path`` unless ``value`` is a finite number above 0."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        p.check(path, "expected an integer" if integer else "expected a number")
    elif not math.isfinite(value) or value <= 0:
        p.check(path, "must be greater than 0")


def is_type(p: Problems, path: str, value: object, kind: type, what: str) -> bool:
    """Whether ``value`` is a ``kind``; if not, record "expected ``what``" at ``path``."""
    if isinstance(value, kind):
        return True
    p.check(path, f"expected {what}")
    return False


def readable_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be opened for reading, or ``None``."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read '{clip(path, 200)}': {exc.strerror}"
