"""The bytes of the audit file: the low-level side of :class:`~keybroker.audit.trail.AuditLog`.

:func:`seal_line` makes one finished line (the format is described in :mod:`keybroker.audit.trail`),
:func:`read_tail` reads where a file's chain ends, :func:`trim_partial` cuts off a line
a crash or a full disk left half-written, :func:`write_all` appends a line whole on a
raw descriptor and :func:`move_no_replace` sets a file aside without ever overwriting another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from keybroker.audit.verify import MAX_LINE_BYTES, open_line

__all__ = ["move_no_replace", "read_tail", "seal_line", "trim_partial", "write_all"]

_HASH_KEY = b',"hash":"'


def seal_line(body: Mapping[str, object]) -> tuple[bytes, str]:
    """The finished line for ``body`` (newline included) and its hash."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    prefix = text[:-1].encode("ascii")  # without the closing brace
    digest = hashlib.sha256(prefix).hexdigest()
    return prefix + _HASH_KEY + digest.encode("ascii") + b'"}\n', digest


def move_no_replace(source: Path, target: Path) -> None:
    """Rename without ever replacing an existing file (``link`` fails where ``rename``
    would overwrite); file systems without hard links get a checked ``rename``."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        if target.exists():
            raise FileExistsError(f"{target.name} already exists") from None
        os.rename(source, target)
        return
    os.unlink(source)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write; loop only on a short write
        view = view[os.write(fd, view) :]


def read_tail(fd: int, size: int) -> tuple[str, int] | str:
    """``(hash, seq)`` of the last line of a file of ``size`` bytes, or what is wrong."""
    chunk = os.pread(fd, min(size, MAX_LINE_BYTES + 1), max(0, size - MAX_LINE_BYTES - 1))
    if not chunk.endswith(b"\n"):
        return "incomplete last line"
    opened = open_line(chunk[:-1].rsplit(b"\n", 1)[-1])
    if isinstance(opened, str):
        return opened
    body, digest = opened
    seq = body["seq"]
    return (digest, seq) if isinstance(seq, int) else "invalid field 'seq'"


def trim_partial(fd: int, size: int) -> int:
    """Cut a half-written last line (no newline) off a file of ``size`` bytes; the new size.

    Such a line was never complete, so no request was let through on it (the write-ahead
    waits for the whole line): removing it lets the chain continue from the last whole line
    instead of starting a new one.  A file with no newline in its last 64 KiB is left as it
    is (not a line of ours)."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start = max(0, size - MAX_LINE_BYTES - 1)
    chunk = os.pread(fd, size - start, start)
    if chunk.endswith(b"\n"):
        return size
    cut = chunk.rfind(b"\n")
    if cut < 0 and start > 0:
        return size
    new_size = start + cut + 1
    os.ftruncate(fd, new_size)
    return new_size
