"""Signed checkpoints of the audit log: ``audit.checkpoints`` next to the log files.

With ``Audit.SigningKey`` set, :class:`~keybroker.audit.trail.AuditLog` appends a checkpoint at a
fixed interval (when lines were written since the last one), at every rotation, when it prunes
and when it closes.  One checkpoint per line (ASCII JSON, ``\\n``-terminated)::

    {"checkpoint":7,"time":"2026-11-25T17:13:00.000Z","reason":"interval",
     "prev":"<hex>","last_seq":412,"last_hash":"<hex>","file":"audit.log",
     "files":["audit.log.20261124T000000Z","audit.log"],"first_seq":1,
     "key":"<key id>","sig":"<base64>"}

* ``checkpoint`` — 1, 2, 3, ... in this file; ``prev`` — SHA-256 of the previous checkpoint's
  line (without its newline), :data:`CHECKPOINT_GENESIS` for the first: checkpoints form a
  chain of their own, so one removed or reordered is found;
* ``last_seq``/``last_hash`` — the last audit line at that moment and the file holding it;
  the audit chain links every earlier line to it, so the signature vouches for all of them;
* ``files`` — every audit file then, oldest first, and ``first_seq`` the seq of the oldest
  file's first line: a deleted oldest file, or any other, no longer matches;
* ``sig`` — Ed25519 over the line's bytes before ``,"sig":``; ``key`` names the public key.

:func:`seal_checkpoint` and :func:`open_checkpoint` make and check one line;
:class:`CheckpointWriter` appends them (its caller holds the directory lock);
:func:`read_checkpoints` reads them all back for :mod:`keybroker.audit.proof`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keybroker.audit.files import trim_partial, write_all
from keybroker.audit.keys import AuditSigner, key_id, signature_valid
from keybroker.audit.verify import MAX_LINE_BYTES

__all__ = [
    "CHECKPOINT_FILE_NAME",
    "CHECKPOINT_GENESIS",
    "Checkpoint",
    "CheckpointWriter",
    "open_checkpoint",
    "read_checkpoints",
    "seal_checkpoint",
]

CHECKPOINT_FILE_NAME = "audit.checkpoints"
CHECKPOINT_GENESIS = hashlib.sha256(b"keybroker-audit-checkpoint-v1").hexdigest()
_SIG_KEY = b',"sig":"'
_SIGNED = re.compile(rb'(\{.*),"sig":"([A-Za-z0-9+/=]{1,200})"\}\Z', re.DOTALL)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_log = logging.getLogger("keybroker.audit")
_REASONS = frozenset({"start", "interval", "rotation", "prune", "shutdown"})


@dataclass(frozen=True)
class Checkpoint:
    """One verified checkpoint line."""

    number: int
    time: str
    reason: str
    last_seq: int
    last_hash: str
    file: str
    files: tuple[str, ...]
    first_seq: int
    prev: str
    line_hash: str


def seal_checkpoint(body: dict[str, object], signer: AuditSigner) -> bytes:
    """The finished checkpoint line (newline included) for ``body``."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    prefix = text[:-1].encode("ascii")
    sig = base64.b64encode(signer.sign(prefix))
    return prefix + _SIG_KEY + sig + b'"}\n'


Keys = Ed25519PublicKey | Sequence[Ed25519PublicKey]


def open_checkpoint(raw: bytes, public: Keys) -> Checkpoint | str:
    """The checkpoint in one line (newline stripped), or why it is not a sound one.

    ``public`` may be several keys (the log's keys over time): the one the line names must
    be among them and its signature must verify."""
    match = _SIGNED.fullmatch(raw)
    if match is None:
        return "malformed checkpoint (no trailing signature field)"
    prefix = match.group(1)
    try:
        sig = base64.b64decode(match.group(2), validate=True)
        body = json.loads(prefix.decode("ascii") + "}")
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: nested too deep
        return "malformed checkpoint (bad JSON or signature encoding)"
    if not isinstance(body, dict):
        return "malformed checkpoint (not an object)"
    keys = [public] if isinstance(public, Ed25519PublicKey) else list(public)
    named = next((k for k in keys if key_id(k) == body.get("key")), None)
    if named is None or not signature_valid(named, sig, prefix):
        return "checkpoint signature does not verify with the given public key(s)"
    return _fields(body, hashlib.sha256(raw).hexdigest())


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return value if ok and isinstance(value, int) else None


def _fields(body: dict[str, object], line_hash: str) -> Checkpoint | str:
    number, seq = _count(body.get("checkpoint")), _count(body.get("last_seq"))
    first = _count(body.get("first_seq"))
    if number is None or seq is None or first is None:
        return "checkpoint with an invalid number field"
    files, last_hash, prev = body.get("files"), body.get("last_hash"), body.get("prev")
    if not isinstance(last_hash, str) or not _HEX64.match(last_hash):
        return "checkpoint with an invalid last_hash"
    if not isinstance(prev, str) or not _HEX64.match(prev):
        return "checkpoint with an invalid prev"
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        return "checkpoint with an invalid file list"
    time_, reason, file_ = body.get("time"), body.get("reason"), body.get("file")
    if not isinstance(time_, str) or not isinstance(reason, str) or reason not in _REASONS:
        return "checkpoint with an invalid time or reason"
    if not isinstance(file_, str):
        return "checkpoint with an invalid file"
    return Checkpoint(
        number, time_, reason, seq, last_hash, file_, tuple(files), first, prev, line_hash
    )


def read_checkpoints(directory: Path, public: Keys) -> list[Checkpoint] | tuple[int, str]:
    """Every checkpoint of ``directory`` in order, each signature and link checked; or
    ``(line number, reason)`` of the first bad line.  Raises :class:`OSError`."""
    path = directory / CHECKPOINT_FILE_NAME
    if not path.is_file():
        return []
    found: list[Checkpoint] = []
    prev = CHECKPOINT_GENESIS
    with path.open("rb") as fh:
        number = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            number += 1
            if not raw.endswith(b"\n"):
                return number, "incomplete checkpoint line"
            opened = open_checkpoint(raw[:-1], public)
            if isinstance(opened, str):
                return number, opened
            if opened.number != number or not hmac.compare_digest(opened.prev, prev):
                return number, "checkpoint chain broken (a checkpoint removed, moved or changed)"
            found.append(opened)
            prev = opened.line_hash
    return found


class CheckpointWriter:
    """Appends signed checkpoints to ``<directory>/audit.checkpoints``.

    The caller holds the audit directory's lock, so the workers sharing a directory append
    one chain of checkpoints.  :meth:`write` skips a checkpoint identical in substance to the
    last one (same last line, same files)."""

    def __init__(self, directory: Path, signer: AuditSigner) -> None:
        self.path = directory / CHECKPOINT_FILE_NAME
        self.signer = signer
        # the last checkpoint this writer wrote: (number, line hash, files, first seq); a
        # checkpoint file that lost it (deleted, truncated) is chained on from it, not anew
        self._mine: tuple[int, str, list[str], int] | None = None

    def write(
        self,
        *,
        time: str,
        reason: str,
        last: tuple[int, str],
        file: str,
        files: list[str],
        first_seq: int,
    ) -> bool:
        """Append one checkpoint; ``False`` when it would repeat the last.  Raises OSError."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o640)
        try:
            number, prev, same = self._tail(fd, last, files)
            if self._mine is not None and number <= self._mine[0]:
                _log.error("audit checkpoints removed (the file holds fewer than written)")
                number, prev, same = self._mine[0] + 1, self._mine[1], False
            if same:
                return False
            body: dict[str, object] = {
                "checkpoint": number,
                "time": time,
                "reason": reason,
                "prev": prev,
                "last_seq": last[0],
                "last_hash": last[1],
                "file": file,
                "files": files,
                "first_seq": first_seq,
                "key": self.signer.key_id,
            }
            size = os.fstat(fd).st_size
            try:
                line = seal_checkpoint(body, self.signer)
                write_all(fd, line)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # never leave half a checkpoint behind
                raise
            self._mine = (number, hashlib.sha256(line[:-1]).hexdigest(), files, first_seq)
            return True
        finally:
            os.close(fd)

    def listed(self) -> tuple[list[str], int] | None:
        """The files and first seq the last checkpoint named (this writer's own last one when
        the file lost it); ``None`` without one."""
        found = self._listed()
        mine = self._mine
        if mine is not None and (found is None or found[2] < mine[0]):
            return mine[2], mine[3]
        return None if found is None else (found[0], found[1])

    def _listed(self) -> tuple[list[str], int, int] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            chunk = os.pread(fd, min(size, MAX_LINE_BYTES + 1), max(0, size - MAX_LINE_BYTES - 1))
        finally:
            os.close(fd)
        if not chunk.endswith(b"\n"):
            return None
        line = chunk[:-1].rsplit(b"\n", 1)[-1]
        try:
            body = json.loads(line[: line.rindex(b',"sig":')].decode("ascii") + "}")
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict):
            return None
        files, first, number = body.get("files"), body.get("first_seq"), body.get("checkpoint")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return None
        first = first if isinstance(first, int) else 0
        return files, first, number if isinstance(number, int) else 0

    def _tail(self, fd: int, last: tuple[int, str], files: list[str]) -> tuple[int, str, bool]:
        """(next number, prev hash, whether the last checkpoint already says all this)."""
        size = trim_partial(fd, os.fstat(fd).st_size)
        if size == 0:
            return 1, CHECKPOINT_GENESIS, False
        chunk = os.pread(fd, min(size, MAX_LINE_BYTES + 1), max(0, size - MAX_LINE_BYTES - 1))
        line = chunk[:-1].rsplit(b"\n", 1)[-1]
        try:
            body = json.loads(line[: line.rindex(b',"sig":')].decode("ascii") + "}")
            number = int(body["checkpoint"]) + 1
        except (ValueError, KeyError, TypeError, RecursionError):
            raise OSError("the last audit checkpoint is unreadable") from None
        same = body.get("last_seq") == last[0] and body.get("files") == files
        return number, hashlib.sha256(line).hexdigest(), same
