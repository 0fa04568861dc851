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
import fcntl
import hashlib
import os
import secrets
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, Self, TypeVar

from keybroker.kms.errors import BackendError, DEKExists, DEKNotFound, IntegrityError
from keybroker.kms.uri import ParsedURI
from keybroker.storage import MAX_BLOB_BYTES, validate_blob, validate_key_id, validate_prefix

__all__ = ["FileStorage", "decode_name", "encode_name"]

_SAFE = "-_~"  # plus ASCII letters and digits, which quote() always keeps
_CHUNK = 200
_DIR_MARK = "+"
_LOCK_STRIPES = 16  # replace() locks: few files, yet unrelated ids rarely wait on each other

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
    :class:`keybroker.storage.base.Storage`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._root = Path(path)

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
        """Create the directory (mode 0700) if missing.  Raises ``BackendError``."""
        await _run(self._mkdir, self._root)

    async def get(self, key_id: str) -> bytes:
        """Raises ``DEKNotFound``, ``ValueError`` (bad id), ``BackendError``."""
        return await _run(self._get, validate_key_id(key_id))

    async def put(self, key_id: str, data: bytes) -> None:
        """Create-only.  Raises ``DEKExists``, ``ValueError``, ``BackendError``."""
        await _run(self._put, validate_key_id(key_id), validate_blob(data))

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-swap: write ``new`` only if the blob is still ``old`` (``False``, no
        change, if not).  Not part of the Storage protocol.  Raises ``DEKNotFound``,
        ``ValueError``, ``BackendError``."""
        validate_key_id(key_id)
        return await _run(self._replace, key_id, validate_blob(old), validate_blob(new))

    async def delete(self, key_id: str) -> None:
        """Raises ``DEKNotFound``, ``ValueError`` (bad id), ``BackendError``."""
        await _run(self._delete, validate_key_id(key_id))

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted ids starting with ``prefix``.  Raises ``BackendError``."""
        return await _run(self._list, validate_prefix(prefix))

    async def close(self) -> None:
        """Nothing to release (idempotent)."""

    def __repr__(self) -> str:
        return f"FileStorage({str(self._root)!r})"

    # -- blocking parts, run in a worker thread ------------------------------------------

    def _path(self, key_id: str) -> Path:
        return self._root.joinpath(*encode_name(key_id))

    def _get(self, key_id: str) -> bytes:
        try:
            with open(self._path(key_id), "rb") as f:
                data = f.read(MAX_BLOB_BYTES + 1)
        except FileNotFoundError:
            raise DEKNotFound(f"no DEK stored for id {key_id!r}") from None
        if len(data) > MAX_BLOB_BYTES:
            raise IntegrityError(f"stored blob for id {key_id!r} is larger than any DEK blob")
        return data

    def _put(self, key_id: str, data: bytes) -> None:
        target = self._path(key_id)
        self._mkdir(target.parent)
        tmp = target.parent / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, target)  # atomic create-only: EEXIST if another writer won
        except FileExistsError:
            raise DEKExists(f"a DEK is already stored for id {key_id!r}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(target.parent)

    def _replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        self._mkdir(self._root)
        stripe = hashlib.sha256(key_id.encode()).digest()[0] % _LOCK_STRIPES
        lock = os.open(self._root / f".replace-lock-{stripe}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by close
            if self._get(key_id) != old:
                return False
            target = self._path(key_id)
            tmp = target.parent / f".tmp-{secrets.token_hex(8)}"
            try:
                self._write_new(tmp, new)
                os.replace(tmp, target)  # atomic: readers see the old blob or the new one
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_dir(target.parent)
            return True
        finally:
            os.close(lock)

    @staticmethod
    def _write_new(tmp: Path, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _delete(self, key_id: str) -> None:
        target = self._path(key_id)
        try:
            os.unlink(target)
        except FileNotFoundError:
            raise DEKNotFound(f"no DEK stored for id {key_id!r}") from None
        _fsync_dir(target.parent)

    def _list(self, prefix: str) -> builtins.list[str]:
        found: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(self._root):
            rel = Path(dirpath).relative_to(self._root).parts
            dirnames[:] = [d for d in dirnames if d.endswith(_DIR_MARK)]
            for name in filenames:
                key_id = None if name.startswith(".") else decode_name([*rel, name])
                if key_id is not None and key_id.startswith(prefix):
                    found.append(key_id)
        return sorted(found)

    @staticmethod
    def _mkdir(path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a create/delete durable; some file systems refuse to fsync a directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


async def _run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run blocking file I/O in a thread; an OS error becomes ``BackendError`` (no content)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackendError(f"file storage: {reason}") from exc
