"""Reading an audit log back: the line format, the files of a chain, and :func:`verify`.

The format and the guarantees of the chain are described in :mod:`keybroker.audit.trail`, whose
:class:`~keybroker.audit.trail.AuditLog` writes what this module reads.  :func:`verify` walks every
line of one file or of a whole directory (rotated files in chain order, then ``audit.log``)
and reports the first line that breaks the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AUDIT_FILE_NAME",
    "GENESIS",
    "MAX_LINE_BYTES",
    "LineHook",
    "VerifyResult",
    "audit_files",
    "open_line",
    "rotated_files",
    "rotated_key",
    "verify",
]

AUDIT_FILE_NAME = "audit.log"
GENESIS = hashlib.sha256(b"keybroker-audit-v1").hexdigest()
MAX_LINE_BYTES = 64 * 1024  # an audit line is a record, not a dump channel

#: told of each sound line (its file, body and hash); a string it returns breaks the chain there
LineHook = Callable[[Path, dict[str, object], str], str | None]

_SEALED = re.compile(rb'(\{.*),"hash":"([0-9a-f]{64})"\}\Z', re.DOTALL)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_ROTATED = re.compile(re.escape(AUDIT_FILE_NAME) + r"\.(\d{8}T\d{6}Z)(?:\.(\d{1,6}))?\Z")


# --- one line ---------------------------------------------------------------------------


def open_line(raw: bytes) -> tuple[dict[str, object], str] | str:
    """The body and hash of one line (newline stripped), or why it is not a sound line."""
    match = _SEALED.fullmatch(raw)
    if match is None:
        return "malformed line (no trailing hash field)"
    prefix, digest = match.group(1), match.group(2).decode("ascii")
    try:
        body = json.loads(prefix.decode("utf-8") + "}")
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too; a
        return "bad JSON"  # crafted line nested past the parser's recursion limit is no line
    if not isinstance(body, dict) or "hash" in body:
        return "bad JSON (not one object with one hash field)"
    if not hmac.compare_digest(hashlib.sha256(prefix).hexdigest(), digest):
        return "line hash mismatch (the line was altered)"
    return _check_fields(body) or (body, digest)


def _check_fields(body: dict[str, object]) -> str | None:
    time_, seq, prev = body.get("time"), body.get("seq"), body.get("prev")
    if not isinstance(time_, str) or not _TIME.match(time_):
        return "invalid or missing field 'time'"
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "invalid or missing field 'seq'"
    if not isinstance(prev, str) or not _HEX64.match(prev):
        return "invalid or missing field 'prev'"
    if body.get("start", "genesis") not in ("genesis", "rotated"):
        return "invalid field 'start'"
    return None


# --- file names -------------------------------------------------------------------------


def rotated_key(name: str) -> tuple[str, int] | None:
    """``(stamp, n)`` of a rotated file's name (its place in the chain), else ``None``."""
    match = _ROTATED.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 0)


def rotated_files(directory: Path) -> list[tuple[tuple[str, int], Path]]:
    found = []
    for entry in os.scandir(directory):
        key = rotated_key(entry.name)
        if key is not None and entry.is_file(follow_symlinks=False):
            found.append((key, Path(entry.path)))
    return sorted(found)


def audit_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The audit files of ``directory`` in chain order: rotated ones, then ``audit.log``.

    Raises :class:`OSError` if the directory cannot be listed.
    """
    folder = Path(directory)
    files = [path for _, path in rotated_files(folder)]
    live = folder / AUDIT_FILE_NAME
    return [*files, live] if live.is_file() else files


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found.  ``lines``/``files`` count what was read (up to the break).

    ``first_seq`` > 1 means older files were pruned (or removed); ``last_hash`` is the hash
    of the last line, worth recording elsewhere to detect lines cut off the end later.
    """

    ok: bool
    lines: int
    files: int
    broken_file: Path | None = None
    broken_line: int | None = None
    reason: str | None = None
    first_seq: int | None = None
    last_hash: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.lines} lines in {self.files} files"
        return f"tampered: {self.broken_file}:{self.broken_line}: {self.reason}"


@dataclass
class _Walk:
    lines: int = 0
    files: int = 0
    prev: str | None = None
    seq: int = 0
    first_seq: int | None = None
    file: Path | None = None
    on_line: LineHook | None = None


def verify(path: str | os.PathLike[str], *, on_line: LineHook | None = None) -> VerifyResult:
    """Check the chain of one audit file, or of every audit file in a directory.

    Reports the first broken line: bad JSON, a line hash or ``prev`` that does not match, a
    ``seq`` gap, a missing or misplaced ``start`` marker, an incomplete last line.  Raises
    :class:`FileNotFoundError` for a missing path and :class:`OSError` for an unreadable one.
    """
    target = Path(path)
    if target.is_dir():
        files, single = audit_files(target), False
    elif target.exists():
        files, single = [target], True
    else:
        raise FileNotFoundError(f"no such file or directory: {target}")
    walk = _Walk(on_line=on_line)
    for number, file in enumerate(files):
        broken = _verify_file(file, walk, rotated=not single and number < len(files) - 1)
        if broken is not None:
            line, reason = broken
            return VerifyResult(False, walk.lines, walk.files, file, line, reason, walk.first_seq)
    return VerifyResult(True, walk.lines, walk.files, None, None, None, walk.first_seq, walk.prev)


def _verify_file(file: Path, walk: _Walk, *, rotated: bool) -> tuple[int, str] | None:
    walk.files += 1
    walk.file = file
    number = 0
    with file.open("rb") as fh:
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            number += 1
            if not raw.endswith(b"\n"):
                too_long = len(raw) > MAX_LINE_BYTES
                return number, "line too long" if too_long else "incomplete last line (no newline)"
            problem = _verify_line(raw[:-1], number == 1, walk)
            if problem is not None:
                return number, problem
            walk.lines += 1
    if number == 0 and rotated:
        return 1, "empty rotated file"
    return None


def _verify_line(raw: bytes, first: bool, walk: _Walk) -> str | None:
    opened = open_line(raw)
    if isinstance(opened, str):
        return opened
    body, digest = opened
    seq, prev, start = body["seq"], str(body["prev"]), body.get("start")
    if not isinstance(seq, int):  # checked by _open_line already; this narrows the type
        return "invalid or missing field 'seq'"
    problem = _verify_start(start, first, seq, prev, walk) or _verify_link(seq, prev, walk)
    if problem is None and walk.on_line is not None and walk.file is not None:
        problem = walk.on_line(walk.file, body, digest)
    if problem is None:
        walk.prev, walk.seq = digest, seq
        walk.first_seq = seq if walk.first_seq is None else walk.first_seq
    return problem


def _verify_start(start: object, first: bool, seq: int, prev: str, walk: _Walk) -> str | None:
    if not first:
        return "start marker inside a file" if start is not None else None
    if start is None:
        return "first line of a file has no start marker (lines removed above it?)"
    if start == "genesis":
        if walk.prev is not None:
            return "the chain restarts (genesis) after earlier lines"
        if seq != 1 or not hmac.compare_digest(prev, GENESIS):
            return "genesis line with a seq other than 1 or a prev other than the genesis hash"
    return None


def _verify_link(seq: int, prev: str, walk: _Walk) -> str | None:
    if walk.prev is None:
        return None  # the oldest retained line: what came before was pruned
    if not hmac.compare_digest(prev, walk.prev):
        return "prev hash does not match the line before (a line removed, moved or changed)"
    if seq != walk.seq + 1:
        return f"seq gap: expected {walk.seq + 1}, found {seq}"
    return None
