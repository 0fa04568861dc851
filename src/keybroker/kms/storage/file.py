"""Local-directory storage (``storage://file?path=DIR``): one file per key id, no cloud needed.

File names: the id's UTF-8 bytes percent-encoded, keeping only ``A-Z a-z 0-9 - _ ~`` (so ``/``,
``.`` and ``%`` are always escaped: ``../x`` becomes ``%2E%2E%2Fx`` and cannot leave the
directory, and no name starts with ``.``).  An encoded name longer than 200 characters is split
into 200-character directory components ending in ``+`` (a character the encoding never
produces), keeping each component within the 255-byte limit of common file systems.  The
directory should be on a case-sensitive file system (``%2f`` and ``%2F`` never both occur, but
``A`` and ``a`` are different ids).

Writes are atomic and create-only, across threads *and processes*: the blob goes to a temporary
``.tmp-*`` file in the target directory, is ``fsync``-ed, then ``os.link``-ed to its final name —
``link`` fails with ``EEXIST`` if the id exists, so exactly one writer wins and a reader sees a
whole blob or none.  The directory is ``fsync``-ed after a create or delete.  Directories are
created with mode ``0700`` and files with ``0600``.

Nothing planted in the directory is followed or trusted: every path is walked from the root with
``O_NOFOLLOW`` directory descriptors (a symlink at a chunk directory or at an id is refused,
never followed out of the root); an id whose entry is not a regular file (a FIFO, a device, a
directory, a symlink) is refused without blocking on it; a read stops past the 64 KiB blob
limit; every file we create (``.tmp-*`` and the lock files) is made with
``O_CREAT|O_EXCL|O_NOFOLLOW`` inside the root.  The root itself must be a directory owned by
the user running keybroker and writable by nobody else (no group or world write bit), or every
operation fails with a ``KMSConfigError`` saying which.  On its first operation a storage
removes what a crash left behind: ``.tmp-*`` files older than five minutes (younger ones may be
another process's write in progress) and any ``.tmp-*`` or lock name that is not a regular file.

``replace`` (compare-and-swap, used by rewrap) holds an exclusive ``flock`` on one of 16
``.replace-lock-N`` files in the root directory (picked by a hash of the id) while it re-reads
the blob, compares, and ``rename``-s a fully written temporary file over it: concurrent
replacers of one id in any process are serialised, and a reader sees the old blob or the new
one.  (``delete`` does not take the lock, so a replace racing a delete
of the same id may put the blob back.)
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, Self, TypeVar

from keybroker.kms.errors import BackendError, DEKNotFound, IntegrityError, KMSConfigError
from keybroker.kms.storage import MAX_BLOB_BYTES, validate_blob, validate_key_id, validate_prefix
from keybroker.kms.storage._common import already_stored, not_stored, too_large
from keybroker.kms.uri import ParsedURI

__all__ = [
    "TEMP_GRACE_SECONDS",
    "FileStorage",
    "check_root",
    "clean_leftovers",
    "decode_name",
    "encode_name",
]

_SAFE = "-_~"  # plus ASCII letters and digits, which quote() always keeps
_CHUNK = 200
_DIR_MARK = "+"
_LOCK_STRIPES = 16  # replace() locks: few files, yet unrelated ids rarely wait on each other
_LOCK_PREFIX = ".replace-lock-"
_TMP_PREFIX = ".tmp-"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP_GRACE_SECONDS = 300  # a .tmp-* file younger than this may be a write in progress

P = ParamSpec("P")
R = TypeVar("R")


def encode_name(key_id: str) -> list[str]:
    """The path components for ``key_id`` (reversible; see the module docstring)."""
    encoded = urllib.parse.quote(key_id, safe=_SAFE, encoding="utf-8", errors="strict")
    encoded = encoded.replace(".", "%2E")  # quote() keeps '.'; we never want it in a name
    parts = [encoded[i : i + _CHUNK] for i in range(0, len(encoded), _CHUNK)]
    return [p + _DIR_MARK for p in parts[:-1]] + parts[-1:]


def decode_name(parts: list[str]) -> str | None:
    """The id for path components, or ``None`` if they are not a name we made."""
    if not parts or any(not p.endswith(_DIR_MARK) for p in parts[:-1]):
        return None
    joined = "".join(p[:-1] for p in parts[:-1]) + parts[-1]
    try:
        key_id = urllib.parse.unquote(joined, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return key_id if encode_name(key_id) == parts else None


class FileStorage:
    """A directory of blob files; see the module docstring and
    :class:`keybroker.kms.storage.base.Storage`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._root = Path(path)
        self._cleaned = False

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` for missing/unknown parameters (no file access)."""
        parsed.check_known("path")
        parsed.require("path")

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """``storage://file?path=DIR``; the directory is created on first write."""
        cls.validate_uri(parsed)
        return cls(parsed.params["path"])

    @property
    def root(self) -> Path:
        return self._root

    async def open(self) -> None:
        """Create the directory (mode 0700) if missing, check it and clean up what a crash
        left.  Raises ``KMSConfigError`` (unsafe root), ``BackendError``."""
        await _run(self._open_sync)

    async def get(self, key_id: str) -> bytes:
        """Raises ``DEKNotFound``, ``IntegrityError`` (not a blob file, or too large),
        ``ValueError`` (bad id), ``KMSConfigError`` (unsafe root), ``BackendError``."""
        return await _run(self._get, validate_key_id(key_id))

    async def put(self, key_id: str, data: bytes) -> None:
        """Create-only.  Raises ``DEKExists``, ``IntegrityError`` (a planted chunk directory),
        ``ValueError``, ``KMSConfigError``, ``BackendError``."""
        await _run(self._put, validate_key_id(key_id), validate_blob(data))

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-swap: write ``new`` only if the blob is still ``old`` (``False``, no
        change, if not).  Not part of the Storage protocol.  Raises ``DEKNotFound``,
        ``IntegrityError``, ``ValueError``, ``KMSConfigError``, ``BackendError``."""
        validate_key_id(key_id)
        return await _run(self._replace, key_id, validate_blob(old), validate_blob(new))

    async def delete(self, key_id: str) -> None:
        """Raises ``DEKNotFound``, ``ValueError`` (bad id), ``KMSConfigError``,
        ``BackendError``."""
        await _run(self._delete, validate_key_id(key_id))

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted ids starting with ``prefix``.  Raises ``KMSConfigError``, ``BackendError``."""
        return await _run(self._list, validate_prefix(prefix))

    async def close(self) -> None:
        """Nothing to release (idempotent)."""

    def __repr__(self) -> str:
        return f"FileStorage({str(self._root)!r})"

    # -- blocking parts, run in a worker thread ------------------------------------------

    def _open_sync(self) -> None:
        with self._root_fd(create=True):
            pass

    @contextlib.contextmanager
    def _root_fd(self, *, create: bool) -> Iterator[int]:
        """A checked descriptor of the root (created 0700 if ``create``); raises
        ``DEKNotFound`` when it is missing and not ``create``."""
        if create:
            os.makedirs(self._root, mode=0o700, exist_ok=True)
        try:
            fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DEKNotFound("file storage directory does not exist yet") from None
        try:
            check_root(self._root, os.fstat(fd))
            if not self._cleaned:
                clean_leftovers(fd)
                self._cleaned = True
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _parent_fd(self, key_id: str, *, create: bool) -> Iterator[tuple[int, str]]:
        """The descriptor of the directory holding ``key_id``'s file, and the file's name."""
        *dirs, name = encode_name(key_id)
        with self._root_fd(create=create) as root, contextlib.ExitStack() as stack:
            fd = root
            for part in dirs:
                fd = _open_dir(fd, part, key_id, create=create)
                stack.callback(os.close, fd)
            yield fd, name

    def _get(self, key_id: str) -> bytes:
        try:
            with self._parent_fd(key_id, create=False) as (parent, name):
                return _read_blob(parent, name, key_id)
        except DEKNotFound:
            raise not_stored(key_id) from None

    def _put(self, key_id: str, data: bytes) -> None:
        with self._parent_fd(key_id, create=True) as (parent, name):
            tmp = _write_temp(parent, data)
            try:
                # atomic create-only: EEXIST if another writer won (or anything sits there)
                os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise already_stored(key_id) from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=parent)
            _fsync(parent)

    def _replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        stripe = hashlib.sha256(key_id.encode()).digest()[0] % _LOCK_STRIPES
        with self._root_fd(create=True) as root:
            lock = _open_lock(root, f"{_LOCK_PREFIX}{stripe}")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by close
            if self._get(key_id) != old:
                return False
            with self._parent_fd(key_id, create=False) as (parent, name):
                tmp = _write_temp(parent, new)
                try:
                    # atomic: readers see the old blob or the new one
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=parent)
                _fsync(parent)
            return True
        finally:
            os.close(lock)

    def _delete(self, key_id: str) -> None:
        try:
            with self._parent_fd(key_id, create=False) as (parent, name):
                os.unlink(name, dir_fd=parent)
                _fsync(parent)
        except (DEKNotFound, FileNotFoundError):
            raise not_stored(key_id) from None

    def _list(self, prefix: str) -> builtins.list[str]:
        try:
            with self._root_fd(create=False):
                pass
        except DEKNotFound:
            return []
        found: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(self._root):  # never follows links
            rel = Path(dirpath).relative_to(self._root).parts
            dirnames[:] = [d for d in dirnames if d.endswith(_DIR_MARK)]
            for name in filenames:
                key_id = None if name.startswith(".") else decode_name([*rel, name])
                if key_id is not None and key_id.startswith(prefix):
                    found.append(key_id)
        return sorted(found)


def check_root(root: Path, st: os.stat_result) -> None:
    """Refuse a root that another user owns or that others may write to: whoever can write
    there can plant, swap or delete blobs.  Raises ``KMSConfigError`` saying which."""
    if st.st_uid != os.geteuid():
        raise KMSConfigError(
            f"file storage directory {root} is owned by uid {st.st_uid}, not by uid"
            f" {os.geteuid()} which runs keybroker: chown it (or use another directory)"
        )
    if st.st_mode & 0o022:
        raise KMSConfigError(
            f"file storage directory {root} is writable by group or others"
            f" (mode {stat.S_IMODE(st.st_mode):04o}): chmod 700 it"
        )


def clean_leftovers(root: int) -> None:
    """Remove, under the root and its chunk directories, ``.tmp-*`` files older than
    ``TEMP_GRACE_SECONDS`` (a crashed write), and any ``.tmp-*`` or lock name that is not a
    regular file (planted).  Never follows a link; errors leave an entry in place."""
    now = time.time()
    for dirpath, dirnames, _files, dirfd in os.fwalk(".", dir_fd=root):
        dirnames[:] = [d for d in dirnames if d.endswith(_DIR_MARK)]
        for name in os.listdir(dirfd):  # files, links, FIFOs and directories alike
            if name.startswith(_TMP_PREFIX) or (dirpath == "." and name.startswith(_LOCK_PREFIX)):
                _remove_if_stale(dirfd, name, now)


def _remove_if_stale(dirfd: int, name: str, now: float) -> None:
    with contextlib.suppress(OSError):
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        regular = stat.S_ISREG(st.st_mode)
        if regular and (name.startswith(_LOCK_PREFIX) or now - st.st_mtime < TEMP_GRACE_SECONDS):
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)


def _open_dir(parent: int, name: str, key_id: str, *, create: bool) -> int:
    """Open (or create, 0700) the chunk directory ``name`` without following a link."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
    try:
        return os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
    except FileNotFoundError:
        raise DEKNotFound(key_id) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise IntegrityError(
                f"file storage: a directory on the path of id {key_id!r} is a symlink or"
                " not a directory: refused"
            ) from None
        raise


def _read_blob(parent: int, name: str, key_id: str) -> bytes:
    """The bytes of the regular file ``name``: a link, FIFO, device or directory there is
    refused before it is opened (and again on the open descriptor), a file past the blob
    limit after reading the limit and one byte."""
    try:
        _check_regular(os.stat(name, dir_fd=parent, follow_symlinks=False), key_id)
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
        )
    except FileNotFoundError:
        raise DEKNotFound(key_id) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _check_regular(None, key_id)
        raise
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(f.fileno()), key_id)
        data = f.read(MAX_BLOB_BYTES + 1)
    if len(data) > MAX_BLOB_BYTES:
        raise too_large(key_id)
    return data


def _check_regular(st: os.stat_result | None, key_id: str) -> None:
    """Refuse anything but a regular file (``None``: the open met a symlink)."""
    if st is not None and stat.S_ISREG(st.st_mode):
        return
    kind = "a symlink" if st is None else _KINDS.get(stat.S_IFMT(st.st_mode), "not a file")
    raise IntegrityError(
        f"file storage: the entry for id {key_id!r} is {kind}, not a blob file: refused"
    )


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symlink",
}


def _write_temp(parent: int, data: bytes) -> str:
    """A new, fsync-ed ``.tmp-*`` file (0600, ``O_EXCL|O_NOFOLLOW``) holding ``data``."""
    tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(tmp, _NEW_FILE, 0o600, dir_fd=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise
    return tmp


def _open_lock(root: int, name: str) -> int:
    """The lock file ``name``, created ``O_EXCL|O_NOFOLLOW`` if missing; one that exists must
    be a regular file we own (a link there is never followed, a FIFO never blocks)."""
    try:
        return os.open(name, (_NEW_FILE & ~os.O_WRONLY) | os.O_RDWR, 0o600, dir_fd=root)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=root)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        fd = -1
    st = os.fstat(fd) if fd >= 0 else None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        if fd >= 0:
            os.close(fd)
        raise BackendError(
            f"file storage: lock file {name} is not a regular file owned by keybroker's user:"
            " remove it"
        )
    return fd


def _fsync(fd: int) -> None:
    """Make a create/delete durable; some file systems refuse to fsync a directory."""
    with contextlib.suppress(OSError):
        os.fsync(fd)


async def _run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run blocking file I/O in a thread; an OS error becomes ``BackendError`` (no content)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackendError(f"file storage: {reason}") from exc
