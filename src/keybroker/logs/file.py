"""The log file: JSON lines appended to ``<Output>/key_proxy.log``, rotated by size.

A line that would take the file past its size first moves the file aside as
``key_proxy.log.<UTC time>`` (a ``.1``, ``.2`` suffix rather than ever overwriting one);
rotated files older than the maximum age are deleted at start-up and after each rotation.
How several processes share one file is described in :mod:`keybroker.logs.setup`, which formats
the lines and installs this handler.

Records reach the file as soon as they are logged.  Lines given to
:meth:`SizeRotatingFileHandler.write_line` (the access line of every request) are buffered
instead and written many at once: when 64 KiB have gathered, 100 ms after the first of them
(a flusher thread sees to it), before any other line, when an urgent (warn or worse) line
comes, on :meth:`~SizeRotatingFileHandler.flush` and :meth:`~SizeRotatingFileHandler.close`
(:func:`logging.shutdown` calls both at interpreter exit).  A buffer is written whole lines
only, in order; a forked child drops the lines its parent had buffered (the parent writes
them).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["LOG_FILE_NAME", "Clock", "SizeRotatingFileHandler"]

LOG_FILE_NAME = "key_proxy.log"  # key-proxy's name, so existing log shippers keep working

Clock = Callable[[], float]
_STAMP = "%Y%m%dT%H%M%SZ"
_ROTATED_NAME = re.compile(re.escape(LOG_FILE_NAME) + r"\.(\d{8}T\d{6}Z)(?:\.\d+)?")
_DAY = 86400.0
BUFFER_BYTES = 64 * 1024  # buffered lines are written once they add up to this much
FLUSH_DELAY = 0.1  # ... or this many seconds after the first of them, at the latest


class SizeRotatingFileHandler(logging.Handler):
    """Appends lines to ``<directory>/key_proxy.log``; rotates by size, prunes by age.

    ``clock`` (seconds since the epoch) names rotated files and decides their age, so tests
    need no sleeping.  Raises :class:`OSError` if the file cannot be opened.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        max_age_days: int,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        if max_bytes <= 0 or max_age_days <= 0:
            raise ValueError("max_bytes and max_age_days must be positive")
        self.directory = Path(directory)
        self.path = self.directory / LOG_FILE_NAME
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self._clock = clock
        self._fd = -1
        self._reset_buffer()
        _BUFFERING.add(self)
        self._open()
        try:
            self.prune()
        except OSError:
            self.close()
            raise

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd < 0:
            return  # closed by a reconfiguration while this record was on its way
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if self._pending:  # buffered lines go first, in the same write
                self._pending.append(data)
                self._write_pending()
            else:
                self._write(data)
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        """Buffer one formatted line (without its newline); see the module docstring.

        ``urgent`` writes it, and everything buffered before it, at once.
        """
        data = (line + "\n").encode("utf-8", "backslashreplace")
        with self._wake:
            if self._fd < 0:
                return  # closed by a reconfiguration while this line was on its way
            pending = self._pending
            pending.append(data)
            self._pending_bytes += len(data)
            if urgent or self._pending_bytes >= BUFFER_BYTES:
                self._flush_or_report()
            elif len(pending) == 1:
                self._deadline = time.monotonic() + FLUSH_DELAY
                self._wake_flusher()
            elif time.monotonic() >= self._deadline:  # the flusher is late (a busy process)
                self._flush_or_report()

    def flush(self) -> None:
        """Write the buffered lines now."""
        with self._wake:
            if self._fd >= 0 and self._pending:
                self._flush_or_report()

    def close(self) -> None:
        with self._wake:
            if self._fd >= 0:
                try:
                    if self._pending:
                        self._flush_or_report()
                finally:
                    os.close(self._fd)
                    self._fd = -1
                    self._wake.notify_all()  # the flusher thread ends
        super().close()

    def prune(self) -> int:
        """Delete rotated files older than ``max_age_days``; return how many were deleted."""
        cutoff = self._clock() - self.max_age_days * _DAY
        deleted = 0
        for entry in os.scandir(self.directory):
            stamp = _rotated_at(entry.name)
            if stamp is not None and stamp < cutoff:
                try:
                    os.unlink(entry.path)
                    deleted += 1
                except FileNotFoundError:
                    pass  # another process pruned it first
        return deleted

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o640)

    # --- the buffer (all under the handler's lock) ---------------------------------------

    _pending: list[bytes]
    _wake: threading.Condition

    def _reset_buffer(self) -> None:
        self._pending = []
        self._pending_bytes = 0
        self._deadline = 0.0
        self._wake = threading.Condition(self.lock)
        self._flusher_pid = 0  # the process whose flusher thread runs, 0 for none

    def _wake_flusher(self) -> None:
        if self._flusher_pid == os.getpid():
            self._wake.notify()
            return
        self._flusher_pid = os.getpid()
        name = f"keybroker-log-flusher-{self.path.parent.name}"
        threading.Thread(target=self._flush_loop, name=name, daemon=True).start()

    def _flush_loop(self) -> None:
        with self._wake:
            while self._fd >= 0:
                if not self._pending:
                    self._wake.wait()
                    continue
                delay = self._deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                self._flush_or_report()

    def _flush_or_report(self) -> None:
        count = len(self._pending)
        try:
            self._write_pending()
        except Exception:
            self.handleError(_buffer_record(count))

    def _write_pending(self) -> None:
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        data = b"".join(lines)
        if os.fstat(self._fd).st_size + len(data) <= self.max_bytes:
            self._write_all(data)
            return
        for line in lines:  # the file fills up on the way: rotate where a line would not fit
            self._write(line)

    def _drop_after_fork(self) -> None:
        # The parent writes what it had buffered; the child's flusher thread is gone.
        self._reset_buffer()

    # --- the file --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        # The file's own size, not a count of our bytes: other processes append to it too,
        # and a file another process rotated away shows up here as full.
        if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
            self._make_room(len(data))
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop only on a short write
            view = view[os.write(self._fd, view) :]

    def _make_room(self, incoming: int) -> None:
        # Check-and-rotate must be atomic across worker processes: without the lock, two
        # processes can both rotate, and the second one's unlink removes the fresh file the
        # first one is already writing to (its lines would be lost).
        with self._rotation_lock():
            if self._replaced():
                os.close(self._fd)
                self._open()
            size = os.fstat(self._fd).st_size
            if size > 0 and size + incoming > self.max_bytes:
                self._rotate()

    @contextlib.contextmanager
    def _rotation_lock(self) -> Iterator[None]:
        # The directory itself is the lock: no extra file appears next to the logs.
        fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _replaced(self) -> bool:
        """Was the file renamed away (by another process) since we opened it?"""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        ours = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) != (ours.st_dev, ours.st_ino)

    def _rotate(self) -> None:
        _move_aside(self.path, self._clock())
        os.close(self._fd)
        self._open()
        # A failed clean-up must not stop logging; the next rotation retries it.
        with contextlib.suppress(OSError):
            self.prune()


_BUFFERING: weakref.WeakSet[SizeRotatingFileHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_BUFFERING):
        handler._drop_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _buffer_record(count: int) -> logging.LogRecord:
    """What :meth:`logging.Handler.handleError` reports when buffered lines fail to write."""
    msg = f"{count} buffered log line(s) could not be written"
    return logging.LogRecord("keybroker", logging.ERROR, __file__, 0, msg, None, None)


def _rotated_at(name: str) -> float | None:
    """The UTC time in a rotated file's name, or ``None`` if ``name`` is not one."""
    match = _ROTATED_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _move_aside(path: Path, now: float) -> None:
    """Rename ``path`` to ``path.<stamp>[.n]``, never replacing an existing file.

    ``link`` + ``unlink`` fails instead of overwriting when the name is taken (a plain
    ``rename`` would silently replace it); file systems without hard links fall back to
    ``rename`` after an existence check.
    """
    base = f"{path}.{datetime.fromtimestamp(now, tz=UTC).strftime(_STAMP)}"
    for n in range(10_000):
        target = base if n == 0 else f"{base}.{n}"
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return  # another process moved it already
        except OSError:
            if os.path.exists(target):
                continue
            os.rename(path, target)
            return
        with contextlib.suppress(FileNotFoundError):  # another process unlinked it
            os.unlink(path)
        return
    raise OSError(f"no free name to rotate {path.name} into")
