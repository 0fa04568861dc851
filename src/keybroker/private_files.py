"""Files that hold keys or state: created so that nothing planted beside them is followed.

- :func:`write_new` creates a file ``O_CREAT|O_EXCL|O_NOFOLLOW`` with mode ``0600``: it never
  overwrites anything, never writes through a symlink, and refuses an existing name.
- :func:`replace_atomically` writes a new, randomly named ``0600`` temporary file beside the
  target (same ``O_EXCL|O_NOFOLLOW`` rule), ``fsync``-s it and renames it over the target: a
  symlink planted at a predictable temporary name can no longer redirect the write, and a
  reader sees the old content or the new.
- :func:`open_lock` opens (creating ``0600`` if missing) a lock file without following a link,
  and refuses anything but a regular file owned by the current user (a FIFO never blocks it).
- :func:`check_private` refuses a key file that group or others may read (or write), unless
  the caller passes ``allow_readable``; the message names the file, its mode and the fix.

Every function raises ``OSError`` for I/O failures (callers turn it into their own error) and
:class:`UnsafeFileError` (a ``ValueError``) for a refusal; no message quotes file content.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "UnsafeFileError",
    "check_private",
    "fsync_dir",
    "open_lock",
    "replace_atomically",
    "write_new",
]

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFileError(ValueError):
    """A file is not what a key or state file must be (a link, not ours, readable by others)."""


def write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` (``fsync``-ed).  Raises ``FileExistsError`` if
    anything (a link included) is there, ``OSError``."""
    fd = os.open(path, _NEW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def replace_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Put ``data`` at ``path`` through a new temporary file beside it and a rename (the
    directory is ``fsync``-ed).  Raises ``OSError``."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    write_new(tmp, data, mode=mode)
    try:
        os.replace(tmp, path)  # replaces a link at path itself, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (created ``0600`` if missing).  Raises
    ``UnsafeFileError`` if a link, FIFO, directory or another user's file is there,
    ``OSError``."""
    try:
        return os.open(path, (_NEW & ~os.O_WRONLY) | os.O_RDWR, 0o600)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise _not_a_lock(path) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise _not_a_lock(path)
    return fd


def check_private(path: Path, st: os.stat_result, *, what: str, override: str) -> None:
    """Refuse a key file others may read or write.  ``override`` names the setting that
    accepts it anyway (said in the message).  Raises ``UnsafeFileError``."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UnsafeFileError(
            f"{what} {path} is readable or writable by group or others (mode {mode:04o}):"
            f" chmod 600 it (or set {override} to accept it)"
        )


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable; some file systems refuse to fsync a
    directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _not_a_lock(path: Path) -> UnsafeFileError:
    return UnsafeFileError(f"lock file {path} is not a regular file owned by this user: remove it")
