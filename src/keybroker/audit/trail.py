"""The tamper-evident audit log: hash-chained JSON lines, written before what they record.

key-proxy declares an ``Audit`` block (``Output``, ``Enabled``, ``MaxAge``, ``MaxSize``) and
never builds it; this is that log.  ``Output`` is a directory holding ``audit.log``; a line
that would take it past ``MaxSize`` MB first moves it aside as ``audit.log.<UTC time>[.n]``
(names sort in chain order), and rotated files older than ``MaxAge`` days are deleted.

The line format (one JSON object, ASCII, ``\\n``-terminated)::

    {"time":"2026-11-25T17:13:00.000Z","seq":7,"prev":"<hex>",<event fields>,"hash":"<hex>"}

* ``time`` — RFC 3339, UTC, milliseconds; ``seq`` — 1 for the first line ever, then +1 per
  line, across files;
* ``hash`` — SHA-256 (lower-case hex) of the line's bytes *before* ``,"hash":``, so a line
  changed in place fails at that very line;
* ``prev`` — the ``hash`` of the line before it, across files: the first line of a rotated-to
  file carries the hash of the last line of the file before.  The first line ever carries
  :data:`GENESIS`, the SHA-256 of ``keybroker-audit-v1``;
* ``start`` — only on the first line of each file: ``"genesis"`` (the chain begins) or
  ``"rotated"`` (it continues from the previous file).  Cutting lines off the head of the
  oldest file is therefore detected; deleting whole old files is indistinguishable from
  pruning (:attr:`VerifyResult.first_seq` says where the retained chain begins).

What a chain cannot detect on its own: whole lines cut off the *end* of the newest file, or
whole files deleted.  With a signing key, signed checkpoints close that
(:mod:`keybroker.audit.checkpoint`, verified by :mod:`keybroker.audit.proof`): only the lines
after the last checkpoint stay unproven.

Durability (:mod:`keybroker.audit.sync`): :meth:`AuditLog.commit` returns once a line is
fsync'ed (``always``), covered by its batch window's shared fsync, or written (``none``); the
proxy calls it before a request goes upstream and refuses the request when it raises.

Writers: every append happens under an exclusive ``flock`` of the directory, after checking
that ``audit.log`` is still the file we hold and whether anyone appended since our last line
(size and inode); only then is the file's last line re-read.  So several worker processes can
share one directory and the chain stays one chain, whether each opened the log itself or
inherited it across ``fork()``.  A write that fails (a full disk) is taken back, and a
half-written last line (a crash mid-write) is cut off before the next append: such a line was
never whole, so nothing went on with it, and the chain continues from the line before.  A
last line that is whole but broken (edited) is moved aside and a new chain begins;
:func:`~keybroker.audit.verify.verify` reports it.

Events are checked and cleaned in :mod:`keybroker.audit.event`; the bytes of a line and the
raw file operations live in :mod:`keybroker.audit.files`, reading and verifying in
:mod:`keybroker.audit.verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from keybroker.audit.checkpoint import CheckpointWriter
from keybroker.audit.event import clean_event
from keybroker.audit.files import move_no_replace, read_tail, seal_line, trim_partial, write_all
from keybroker.audit.keys import AuditSigner, load_signer, parse_private_key
from keybroker.audit.mirror import open_mirror
from keybroker.audit.sync import GroupSync, parse_sync
from keybroker.audit.verify import (
    AUDIT_FILE_NAME,
    GENESIS,
    MAX_LINE_BYTES,
    audit_files,
    open_line,
    rotated_files,
    rotated_key,
)
from keybroker.errors import ConfigError
from keybroker.logs.redact import SECRETS, SecretRegistry
from keybroker.settings import AuditConfig

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_SIZE_MB",
    "AuditLog",
]

DEFAULT_MAX_AGE_DAYS = 90
DEFAULT_MAX_SIZE_MB = 100
DEFAULT_CHECKPOINT_INTERVAL = 60.0

Clock = Callable[[], float]
#: a second sink: gets each finished line (newline included) after it is in the file
Mirror = Callable[[bytes], None]

_STAMP = "%Y%m%dT%H%M%SZ"
_DAY = 86400.0
_log = logging.getLogger("keybroker.audit")


# --- one line and file names ------------------------------------------------------------


def _rfc3339(now: float) -> str:
    global _SECOND
    second = int(now // 1)
    ms = min(int((now - second) * 1000), 999)
    cached, text = _SECOND
    if cached != second:  # formatted once a second, not once a line
        text = f"{datetime.fromtimestamp(second, tz=UTC):%Y-%m-%dT%H:%M:%S}"
        _SECOND = (second, text)
    return f"{text}.{ms:03d}Z"


_SECOND: tuple[int, str] = (-1, "")


def _chain_order(name: str) -> tuple[str, int]:
    return rotated_key(name) or ("", 0)


def _stamp_age(stamp: str, default: float | None = None) -> float:
    """The time a rotated file's stamp names; ``default`` (or ValueError) for a stamp that
    matches the name pattern but is no date (month 13)."""
    try:
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        if default is None:
            raise
        return default


# --- the writer -------------------------------------------------------------------------


class AuditLog:
    """Appends hash-chained event lines to ``<directory>/audit.log``.

    Thread-safe, and safe for several processes sharing ``directory``.  ``clock`` (seconds
    since the epoch) stamps lines, names rotated files and decides their age.  ``registry``
    holds the configured secret values, masked wherever they turn up in a string field.
    ``directory=None`` gives a disabled log that checks events and writes nothing.

    ``sync``: ``None`` writes lines without fsync, ``0.0`` fsyncs each line, a positive
    window (seconds) lets :meth:`commit` share one fsync among the lines of that window (see
    :mod:`keybroker.audit.sync`).  ``signer`` adds signed checkpoints every
    ``checkpoint_interval`` seconds, at rotation, pruning and close (see
    :mod:`keybroker.audit.checkpoint`).  ``mirror`` gets every line once it is written.
    ``fail_closed`` is the caller's policy for a failed write (kept here for it).

    Raises :class:`OSError` if the file cannot be opened, :class:`ValueError` for a
    non-positive ``max_bytes``, ``max_age_days`` or ``checkpoint_interval``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        max_bytes: int = DEFAULT_MAX_SIZE_MB * 1024 * 1024,
        max_age_days: int = DEFAULT_MAX_AGE_DAYS,
        clock: Clock = time.time,
        registry: SecretRegistry = SECRETS,
        sync: float | None = None,
        signer: AuditSigner | None = None,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        mirror: Mirror | None = None,
        fail_closed: bool = True,
    ) -> None:
        if max_bytes <= 0 or max_age_days <= 0 or checkpoint_interval <= 0:
            raise ValueError("max_bytes, max_age_days and checkpoint_interval must be positive")
        self.directory = None if directory is None else Path(directory)
        self.sync = sync
        self.fail_closed = fail_closed
        self.checkpoint_interval = checkpoint_interval
        self._mirror = mirror
        self._group = GroupSync(sync, self._fsync) if sync else None
        self._checkpoints = (
            None
            if signer is None or self.directory is None
            else CheckpointWriter(self.directory, signer)
        )
        self._last_checkpoint = clock()
        self._heads: dict[tuple[str, int], int] = {}  # (name, inode) -> first seq
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self._clock = clock
        self._registry = registry
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._fd = -1
        self._closed = False
        self._final_sync = False
        # What we know of the chain's end, valid while the file is (dev, ino, size) = _seen.
        self._seen: tuple[int, int, int] | None = None
        self._prev, self._seq, self._start = GENESIS, 0, "genesis"
        if self.directory is not None:
            self._open()
            with self._dir_lock():
                with contextlib.suppress(OSError):
                    self.prune()
                self._checkpoint_quietly("start")

    @classmethod
    def open(
        cls,
        cfg: AuditConfig,
        *,
        clock: Clock = time.time,
        registry: SecretRegistry = SECRETS,
    ) -> AuditLog:
        """The audit log ``cfg`` describes (disabled unless ``Enabled``).

        ``MaxSize``/``MaxAge`` ``<= 0`` mean the defaults (100 MB, 90 days).  Raises
        :class:`~keybroker.errors.ConfigError` when ``Output`` is empty or cannot be written.
        """
        if not cfg.enabled:
            return cls(None, clock=clock, registry=registry)
        output = cfg.output.strip()
        if output in ("", "-"):
            raise ConfigError("Audit.Output: a directory is required when Audit.Enabled is true")
        max_size = cfg.max_size if cfg.max_size > 0 else DEFAULT_MAX_SIZE_MB
        max_age = cfg.max_age if cfg.max_age > 0 else DEFAULT_MAX_AGE_DAYS
        try:
            sync = parse_sync(cfg.sync)
        except ValueError as exc:
            raise ConfigError(f"Audit.Sync: {exc}") from None
        signer = None
        if cfg.signing_key_pem is not None:
            signer = parse_private_key(cfg.signing_key_pem.reveal())
        elif cfg.signing_key:
            signer = load_signer(cfg.signing_key)
        try:
            os.makedirs(output, mode=0o750, exist_ok=True)
            return cls(
                output,
                max_bytes=max_size * 1024 * 1024,
                max_age_days=max_age,
                clock=clock,
                registry=registry,
                sync=sync,
                signer=signer,
                checkpoint_interval=cfg.checkpoint_interval or DEFAULT_CHECKPOINT_INTERVAL,
                mirror=open_mirror(cfg.mirror),
                fail_closed=cfg.fail_closed,
            )
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"Audit.Output: cannot write in {output!r}: {reason}") from exc

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / AUDIT_FILE_NAME

    def record(self, event: Mapping[str, object], *, durable: bool = True) -> None:
        """Append one line holding ``event``'s fields, fsync'ed unless ``sync`` is ``None``
        or ``durable`` is false (a record nothing waits on, such as an outcome: the next
        fsync of the file covers it).

        Raises :class:`ValueError` for a reserved, malformed or credential-like field name,
        a non-finite number, a line over 64 KiB or a closed log; :class:`TypeError` for a
        value that is not a str/int/float/bool/None (or a list of those) — ``bytes`` and
        :class:`~keybroker.secret.Secret` included; :class:`OSError` if the write fails
        (nothing of the line is left behind: the next line continues the same chain).
        """
        self._write(self._fields(event), fsync=durable and self.sync is not None)

    async def commit(self, event: Mapping[str, object]) -> None:
        """:meth:`record` for the event loop: returns once the line is as durable as
        ``sync`` asks — fsync'ed in a thread (``always``), covered by its window's shared
        fsync (a batch window), or written (``None``).  Raises as :meth:`record`."""
        fields = self._fields(event)
        if self.sync is None:
            self._write(fields, fsync=False)
        elif self._group is None:
            # shielded: a cancelled caller (its client gone) still has its line written,
            # as with the other modes, so it can tell that it was
            await asyncio.shield(asyncio.to_thread(self._write, fields, fsync=True))
        else:
            self._write(fields, fsync=False)
            await self._group.wait()

    def checkpoint(self, reason: str = "interval") -> bool:
        """Write a signed checkpoint now (when lines were written since the last one); whether
        one was written.  No-op without a signing key.  Raises :class:`OSError`."""
        with self._lock:
            if self._closed or self._checkpoints is None:
                return False
            with self._dir_lock():
                return self._checkpoint(reason)

    def checkpoint_if_due(self) -> bool:
        """:meth:`checkpoint` once ``checkpoint_interval`` has passed since the last."""
        if self._checkpoints is None:
            return False
        if self._clock() - self._last_checkpoint < self.checkpoint_interval:
            return False
        return self.checkpoint("interval")

    def close(self) -> None:
        """Write the shutdown checkpoint, close the file; later :meth:`record` calls raise
        ``ValueError``.  Idempotent."""
        with self._lock:
            if self._fd >= 0 and not self._closed and self.directory is not None:
                with self._dir_lock():
                    self._checkpoint_quietly("shutdown")
            self._closed = True
            close_mirror = getattr(self._mirror, "close", None)
            if callable(close_mirror):
                close_mirror()
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)  # what a pending batch waits for is durable now
                    self._final_sync = True
                os.close(self._fd)
                self._fd = -1

    def _fields(self, event: Mapping[str, object]) -> dict[str, object]:
        return clean_event(event, self._registry)  # its size is checked as a whole line

    def _write(self, fields: dict[str, object], *, fsync: bool) -> None:
        with self._lock:
            if self._closed:
                raise ValueError("audit log is closed")
            if self.directory is None:
                return
            with self._dir_lock():
                line = self._append(fields)
                if self._checkpoints is not None and self._due():
                    self._checkpoint_quietly("interval")
            # fsync'ed outside the locks, so writers of other threads (and processes) go on
            # and their fsyncs overlap; a rotation fsyncs the file it sets aside itself
            synced = os.dup(self._fd) if fsync else -1
        if synced >= 0:
            try:
                os.fsync(synced)
            finally:
                os.close(synced)
        if self._mirror is not None:
            self._mirror(line)

    def _fsync(self) -> None:
        """fsync what was written so far (the batch window's shared fsync)."""
        with self._lock:
            if self._fd < 0:
                if self._final_sync:
                    return  # closed after a last fsync that covered every line
                raise OSError(errno.EBADF, "the audit log was closed before its fsync")
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prune(self) -> int:
        """Delete rotated files whose name says they are older than ``max_age_days``;
        return how many were deleted.  Raises :class:`OSError` if the directory cannot
        be listed."""
        if self.directory is None:
            return 0
        cutoff = self._clock() - self.max_age_days * _DAY
        deleted = 0
        for (stamp, _), path in rotated_files(self.directory):
            if _stamp_age(stamp, default=float("inf")) < cutoff:  # no date (month 13): kept
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted += 1
        return deleted

    # -- under the locks --

    def _append(self, fields: dict[str, object]) -> bytes:
        size = -1
        try:
            self._sync()
            line, digest = self._line(fields)
            if len(line) > MAX_LINE_BYTES - 256:  # room for a longer seq or start marker
                raise ValueError(f"audit event too large ({len(line)} bytes)")
            used = self._seen[2] if self._seen is not None else 0
            if used > 0 and used + len(line) > self.max_bytes:
                self._rotate()
                line, digest = self._line(fields)
            size = os.fstat(self._fd).st_size
            write_all(self._fd, line)
        except BaseException:
            self._seen = None  # whatever happened, re-read the file next time
            if size >= 0:  # a short write (a full disk): take the half line back
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)
            raise
        self._prev, self._seq, self._start = digest, self._seq + 1, ""
        st = os.fstat(self._fd)
        self._seen = (st.st_dev, st.st_ino, st.st_size)
        return line

    # -- checkpoints (under the locks) --

    def _due(self) -> bool:
        return self._clock() - self._last_checkpoint >= self.checkpoint_interval

    def _checkpoint_quietly(self, reason: str) -> None:
        try:
            self._checkpoint(reason)
        except (OSError, ValueError) as exc:
            _log.error("audit checkpoint failed: %s", type(exc).__name__)

    def _checkpoint(self, reason: str, file: str = AUDIT_FILE_NAME) -> bool:
        writer = self._checkpoints
        if writer is None:
            return False
        self._sync()
        self._last_checkpoint = self._clock()
        files = audit_files(self._dir_or_raise())
        first = self._first_seq(files[0]) if files else None
        if self._seq == 0 or first is None:
            return False  # nothing written yet: nothing to vouch for
        names, first = self._still_named([path.name for path in files], first, writer)
        return writer.write(
            time=_rfc3339(self._clock()),
            reason=reason,
            last=(self._seq, self._prev),
            file=file,
            files=names,
            first_seq=first,
        )

    def _still_named(
        self, names: list[str], first: int, writer: CheckpointWriter
    ) -> tuple[list[str], int]:
        """The files a checkpoint names: those present, plus those the last checkpoint named
        that are gone although ``MaxAge`` does not prune them yet (deleted by someone else).
        Signing the shortened directory would vouch for the deletion as if it were pruning;
        naming them keeps it visible to ``audit verify`` (for up to ``MaxAge``)."""
        listed = writer.listed()
        if listed is None:
            return names, first
        cutoff = self._clock() - self.max_age_days * _DAY
        gone = []
        for name in listed[0]:
            key = rotated_key(name)
            if name in names or key is None or _stamp_age(key[0], default=0.0) < cutoff:
                continue  # present, the live file (recreated), or old enough to be pruned
            gone.append(name)
        if not gone:
            return names, first
        _log.error(
            "audit files deleted outside pruning: %d; checkpoints keep naming them", len(gone)
        )
        order = sorted(gone + [n for n in names if n != AUDIT_FILE_NAME], key=_chain_order)
        if listed[0] and listed[0][0] in gone and listed[1] > 0:
            first = listed[1]
        return order + [n for n in names if n == AUDIT_FILE_NAME], first

    def _first_seq(self, path: Path) -> int | None:
        """The seq of a file's first line (remembered per name and inode)."""
        with path.open("rb") as fh:
            key = (path.name, os.fstat(fh.fileno()).st_ino)
            if key in self._heads:
                return self._heads[key]
            opened = open_line(fh.readline(MAX_LINE_BYTES + 1).rstrip(b"\n"))
        if isinstance(opened, str) or not isinstance(opened[0].get("seq"), int):
            return None
        seq = int(str(opened[0]["seq"]))
        if len(self._heads) > 4096:
            self._heads.clear()
        self._heads[key] = seq
        return seq

    def _line(self, fields: dict[str, object]) -> tuple[bytes, str]:
        body: dict[str, object] = {
            "time": _rfc3339(self._clock()),
            "seq": self._seq + 1,
            "prev": self._prev,
        }
        if self._start:
            body["start"] = self._start
        body.update(fields)
        return seal_line(body)

    def _sync(self) -> None:
        """Make our descriptor the current file and our idea of the chain's end current."""
        lost = None
        if self._replaced():
            lost = self._deleted_end()
            os.close(self._fd)
            self._fd = -1
            self._open()
        st = os.fstat(self._fd)
        if (st.st_dev, st.st_ino, st.st_size) == self._seen:
            return  # nobody appended since our last line: the cached end is the end
        seen = self._seen
        same_file = seen is not None and seen[:2] == (st.st_dev, st.st_ino)
        if lost is None and same_file and seen is not None and st.st_size < seen[2]:
            lost = self._prev, self._seq  # writers only append whole lines: lines were cut
        size = trim_partial(self._fd, st.st_size)
        if size != st.st_size:
            _log.warning("audit file %s ended with a half-written line; removed", AUDIT_FILE_NAME)
        self._seen = (st.st_dev, st.st_ino, size)
        if size > 0:
            self._resume(read_tail(self._fd, size), self._path_or_raise())
        else:
            self._continue_fromrotated_files()
        if lost is not None and lost[1] > self._seq:
            # The file we were writing was deleted or cut short: chain on from its real end,
            # so verify sees the gap instead of a clean continuation of what is left.
            _log.warning("audit file %s lost lines; they are gone", AUDIT_FILE_NAME)
            (self._prev, self._seq) = lost
            self._start = "rotated" if self._start else ""

    def _deleted_end(self) -> tuple[str, int] | None:
        """``(hash, seq)`` of our file's last line if that file was unlinked (not rotated)."""
        st = os.fstat(self._fd)
        if st.st_nlink == 0 and (st.st_dev, st.st_ino, st.st_size) == self._seen:
            return self._prev, self._seq
        return None

    def _resume(self, tail: tuple[str, int] | str, where: Path) -> None:
        if isinstance(tail, tuple):
            (self._prev, self._seq), self._start = tail, ""
            return
        # A crash or a full disk cut a line short: set the file aside, start a new chain.
        _log.warning("audit file %s ends with a broken line (%s); new chain", where.name, tail)
        if where.name == AUDIT_FILE_NAME:
            self._rotate()
        self._prev, self._seq, self._start = GENESIS, 0, "genesis"

    def _continue_fromrotated_files(self) -> None:
        directory = self._dir_or_raise()
        previous = rotated_files(directory)
        if not previous:
            self._prev, self._seq, self._start = GENESIS, 0, "genesis"
            return
        last = previous[-1][1]
        fd = os.open(last, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            tail = read_tail(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._resume(tail, last)
        if not self._start:
            self._start = "rotated"

    def _rotate(self) -> None:
        directory = self._dir_or_raise()
        now = datetime.fromtimestamp(self._clock(), tz=UTC).strftime(_STAMP)
        existing = rotated_files(directory)
        # Names must sort in chain order even if the clock stepped back.
        stamp, n = now, 0
        if existing and existing[-1][0][0] >= now:
            stamp, n = existing[-1][0][0], existing[-1][0][1] + 1
        name = f"{AUDIT_FILE_NAME}.{stamp}" + (f".{n}" if n else "")
        if self.sync is not None:
            os.fsync(self._fd)  # its lines are durable before the file is set aside
        move_no_replace(self._path_or_raise(), directory / name)
        os.close(self._fd)
        self._fd = -1
        self._open()
        self._start = "rotated"
        st = os.fstat(self._fd)
        self._seen = (st.st_dev, st.st_ino, st.st_size)
        with contextlib.suppress(OSError):  # a failed clean-up must not stop auditing
            self.prune()
        start = self._start
        try:
            self._checkpoint("rotation", file=name)
        except (OSError, ValueError) as exc:
            _log.error("audit checkpoint failed: %s", type(exc).__name__)
        self._start = start

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        # never through a symlink planted in the directory (ELOOP: the write fails closed)
        flags |= getattr(os, "O_NOFOLLOW", 0)
        self._fd = os.open(self._path_or_raise(), flags, 0o640)

    def _replaced(self) -> bool:
        """Did another process rotate ``audit.log`` away since we opened it?"""
        try:
            on_disk = os.stat(self._path_or_raise())
        except FileNotFoundError:
            return True
        ours = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) != (ours.st_dev, ours.st_ino)

    @contextlib.contextmanager
    def _dir_lock(self) -> Iterator[None]:
        # Opened afresh each time: a descriptor inherited across fork() would share its lock
        # with the parent, and the two processes would no longer exclude each other.
        fd = os.open(self._dir_or_raise(), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _dir_or_raise(self) -> Path:
        if self.directory is None:
            raise ValueError("audit log is disabled")
        return self.directory

    def _path_or_raise(self) -> Path:
        return self._dir_or_raise() / AUDIT_FILE_NAME


_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A worker forked while another thread was mid-record would inherit a held lock and
    # hang on its first line; the child has only the forking thread, so a fresh lock is safe.
    for log in list(_LIVE):
        log._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
