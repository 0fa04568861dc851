"""Bulk rewrap: after a KEK rotation, re-seal every stored DEK under the newest KEK version.

:func:`rewrap_all` walks the stored ids in sorted order.  For each id it reads the blob; a blob
already in our envelope under the newest version (and signed, for a KEK that signs) is
*skipped* (so a second run does nothing);
otherwise it opens the DEK, seals the same DEK anew in our envelope (bound to the id: a
Constellation-format blob is upgraded, which is how a legacy store is migrated — it opens only
when the KMS reads legacy blobs, ``legacy_blobs="read"``), checks that the new blob opens to
the same DEK, and swaps it in with the storage's compare-and-swap ``replace(id, old, new)``.
The DEK never changes, so a reader at any moment gets the old blob or the new one and both
give the same key.  A blob changed by someone else meanwhile is read again (a few times).

Storage must offer ``replace`` (:class:`~keybroker.kms.storage.base.Replaceable`: memory, file,
S3, GCS and Azure Blob do); there is deliberately no delete-then-put fallback, because a reader
arriving between the two would find no blob and the KMS would mint a *new* DEK for the id.

Resuming: with ``state_path``, a small JSON file records the target KEK version, the prefix
and ``last_done`` — the highest id such that it and every id before it completed.  With
several ids in flight it lags a little behind; a killed run started again resumes after it
(anything redone is simply skipped).  The file is written atomically, at most a few times a
second, and removed when a run finishes without failures.  A state file for another target
version (the KEK was rotated again) is ignored: the walk starts over.

"Newest version" is the wrapper's ``current_version()`` if it has one
(:class:`~keybroker.kms.base.VersionReporting`: local, AWS, GCP; the key's primary), else the
version a probe ``wrap`` reports (Azure: the latest version).  A blob re-sealed under any other
version (a new primary still propagating) is never swapped in: that id fails this run, and
running again later moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keybroker.errors import KMSError
from keybroker.kms.base import KeyWrapper, VersionReporting
from keybroker.kms.binding import binds_aad, can_sign
from keybroker.kms.envelope import (
    ConstellationBlob,
    KeybrokerEnvelope,
    WriteFormat,
    open_dek,
    seal_dek,
)
from keybroker.kms.errors import BackendError, DEKNotFound, IntegrityError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.storage.base import Replaceable
from keybroker.private_files import replace_atomically

__all__ = ["RewrapProgress", "RewrapReport", "current_kek_version", "inspect_blob", "rewrap_all"]

_log = logging.getLogger("keybroker.kms.rewrap")

_STATE_FORMAT = 1
_STATE_INTERVAL = 0.25  # seconds between state-file writes
_MAX_ATTEMPTS = 5  # re-reads when another writer changes a blob under us
_TAG_BYTES = 16


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    """Passed to the ``progress`` callback after each id."""

    done: int
    total: int
    rewrapped: int
    skipped: int
    failed: int


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """The outcome of :func:`rewrap_all`.  ``failures`` pairs an id with the reason (our
    error messages, which never hold key material); ``resumed_after`` is the state file's
    ``last_done`` that the walk started after, if any."""

    rewrapped: int
    skipped: int
    failed: int
    kek_version: str
    total: int
    resumed_after: str | None = None
    failures: tuple[tuple[str, str], ...] = ()


async def current_kek_version(wrapper: KeyWrapper) -> str:
    """The KEK version new wraps use.  Raises ``BackendError``, ``KMSConfigError``."""
    if isinstance(wrapper, VersionReporting):
        return str(await wrapper.current_version())
    probe = await wrapper.wrap(os.urandom(32), b"keybroker-rewrap-probe")
    return probe.kek_version


#: ids under these prefixes hold markers, not wrapped DEKs (the key service's tombstones)
_NOT_DEKS = ("keybroker-tombstones/",)


async def rewrap_all(
    kms: ExternalKMS,
    *,
    prefix: str = "",
    state_path: str | os.PathLike[str] | None = None,
    progress: Callable[[RewrapProgress], None] | None = None,
    concurrency: int = 8,
) -> RewrapReport:
    """Re-seal every DEK under ``prefix`` with the newest KEK version; see the module docstring.

    Per-id failures (a blob that does not authenticate, a service error) are counted and
    listed in the report, not raised.  Raises ``ValueError`` (bad ``concurrency``, unreadable
    state file, state of another prefix), ``TypeError`` (storage without ``replace``),
    ``BackendError``/``KMSConfigError`` (listing the ids or finding the KEK version failed).
    """
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        raise ValueError("concurrency must be an int from 1 to 256")
    storage = kms.storage
    if not isinstance(storage, Replaceable):
        raise TypeError(f"{storage!r} has no compare-and-swap replace(): cannot rewrap")
    await kms.open()
    target = await current_kek_version(kms.wrapper)
    state = _State(Path(state_path) if state_path is not None else None, prefix, target)
    resumed_after = state.load()
    ids = [
        i
        for i in await storage.list(prefix)
        if (resumed_after is None or i > resumed_after) and not i.startswith(_NOT_DEKS)
    ]
    walk = _Walk(kms, storage, ids, target, state, progress)
    await walk.run(concurrency)
    if walk.failures:
        state.save(force=True)
    else:
        state.remove()
    return RewrapReport(
        rewrapped=walk.counts["rewrapped"],
        skipped=walk.counts["skipped"],
        failed=len(walk.failures),
        kek_version=target,
        total=len(ids),
        resumed_after=resumed_after,
        failures=tuple(walk.failures),
    )


def inspect_blob(blob: bytes, key_id: str) -> tuple[WriteFormat, str, int]:
    """(format, KEK version, DEK size) of a stored blob, without unwrapping anything.
    Raises ``IntegrityError`` for a blob in neither format."""
    if blob[:1] == KeybrokerEnvelope.MAGIC[:1]:
        env = KeybrokerEnvelope.decode(blob, key_id)
        return "keybroker", env.kek_version, env.dek_size
    if blob.lstrip()[:1] == b"{":
        old = ConstellationBlob.decode(blob, key_id)
        return "constellation", old.key_id, len(old.ciphertext) - _TAG_BYTES
    raise IntegrityError(f"stored blob for id {key_id!r} is malformed: its format is unknown")


@dataclass
class _Walk:
    """The ids to visit, the workers visiting them, and the completion watermark."""

    kms: ExternalKMS
    storage: Replaceable  # the KMS's storage, known to offer replace()
    ids: list[str]
    target: str
    state: _State
    progress: Callable[[RewrapProgress], None] | None
    counts: dict[str, int] = field(default_factory=lambda: {"rewrapped": 0, "skipped": 0})
    failures: list[tuple[str, str]] = field(default_factory=list)
    _next: int = 0
    _ok: list[bool] = field(default_factory=list)
    _watermark: int = 0  # ids[:_watermark] all completed successfully

    async def run(self, concurrency: int) -> None:
        self._ok = [False] * len(self.ids)
        workers = [asyncio.create_task(self._worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    async def _worker(self) -> None:
        while self._next < len(self.ids):
            index, self._next = self._next, self._next + 1
            key_id = self.ids[index]
            try:
                outcome = await _rewrap_one(self.kms, self.storage, key_id, self.target)
            except (KMSError, ValueError) as exc:
                _log.warning("rewrap of %r failed: %s", key_id, exc)
                self.failures.append((key_id, str(exc) or type(exc).__name__))
            else:
                self.counts[outcome] += 1
                self._completed(index)
            self._report()

    def _completed(self, index: int) -> None:
        self._ok[index] = True
        while self._watermark < len(self.ids) and self._ok[self._watermark]:
            self._watermark += 1
        if self._watermark:
            self.state.advance(self.ids[self._watermark - 1])

    def _report(self) -> None:
        if self.progress is not None:
            done = self.counts["rewrapped"] + self.counts["skipped"] + len(self.failures)
            self.progress(
                RewrapProgress(
                    done,
                    len(self.ids),
                    self.counts["rewrapped"],
                    self.counts["skipped"],
                    len(self.failures),
                )
            )


async def _rewrap_one(kms: ExternalKMS, storage: Replaceable, key_id: str, target: str) -> str:
    """``"rewrapped"`` or ``"skipped"`` (already on ``target``, or deleted meanwhile).
    Raises ``IntegrityError``, ``BackendError``."""
    wrapper = kms.wrapper
    for _ in range(_MAX_ATTEMPTS):
        try:
            blob = await storage.get(key_id)
        except DEKNotFound:
            return "skipped"
        fmt, version, size = inspect_blob(blob, key_id)
        if fmt == "keybroker" and version == target and _bound(wrapper, blob, key_id):
            return "skipped"
        # a legacy blob opens only with the migration setting, and always comes out bound
        dek = await open_dek(
            wrapper,
            key_id,
            size,
            blob,
            legacy=kms.reads_legacy,
            trusted_store=kms.trusted_store,
        )
        new = await seal_dek(wrapper, key_id, dek)
        sealed_under = inspect_blob(new, key_id)[1]
        if sealed_under != target:
            # A new primary that has not reached every KMS server yet (Cloud KMS: up to about a
            # minute): the id fails this run, and a later run moves it.
            raise BackendError(
                f"the KMS sealed id {key_id!r} under {sealed_under}, not {target}: "
                "the new KEK version is not in use everywhere yet; run rewrap again later"
            )
        # Never swap in a blob that does not give back the very same DEK.
        if await open_dek(wrapper, key_id, size, new) != dek:
            raise IntegrityError(f"re-sealed DEK for id {key_id!r} did not verify")
        try:
            if await storage.replace(key_id, blob, new):
                return "rewrapped"
        except DEKNotFound:
            return "skipped"
    raise BackendError(f"the blob for id {key_id!r} kept changing during rewrap")


def _bound(wrapper: KeyWrapper, blob: bytes, key_id: str) -> bool:
    """Is a blob in our envelope as bound as this wrapper makes it (signed, if it signs)?"""
    if binds_aad(wrapper) or not can_sign(wrapper):
        return True
    return bool(KeybrokerEnvelope.decode(blob, key_id).signature)


class _State:
    """The resumable state file (see the module docstring)."""

    def __init__(self, path: Path | None, prefix: str, target: str) -> None:
        self._path, self._prefix, self._target = path, prefix, target
        self._last_done: str | None = None
        self._saved_at = 0.0
        self._dirty = False

    def load(self) -> str | None:
        """``last_done`` to resume after, or ``None`` to start at the beginning.
        Raises ``ValueError`` for a file that is not a rewrap state or is for another prefix."""
        if self._path is None:
            return None
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"cannot read rewrap state {self._path}: {exc.strerror}") from None
        doc = _parse_state(self._path, raw)
        if doc["prefix"] != self._prefix:
            raise ValueError(
                f"rewrap state {self._path} is for prefix {doc['prefix']!r}, not {self._prefix!r}"
            )
        if doc["kek_version"] != self._target:
            _log.warning("rewrap state %s is for an older KEK version: starting over", self._path)
            return None
        self._last_done = doc["last_done"]
        return self._last_done

    def advance(self, last_done: str) -> None:
        if last_done != self._last_done:
            self._last_done, self._dirty = last_done, True
            self.save()

    def save(self, *, force: bool = False) -> None:
        """Write the state (atomically) if it changed and, unless ``force``, the last write
        is old enough.  Raises ``OSError``."""
        now = time.monotonic()
        if self._path is None or not self._dirty:
            return
        if not force and now - self._saved_at < _STATE_INTERVAL:
            return
        doc = {
            "keybroker_rewrap_state": _STATE_FORMAT,
            "prefix": self._prefix,
            "kek_version": self._target,
            "last_done": self._last_done,
        }
        # a new 0600 temp file (O_EXCL|O_NOFOLLOW, random name) renamed over the state: a
        # kill leaves the old state or the new, never half, and a planted link is not followed
        replace_atomically(self._path, json.dumps(doc).encode())
        self._saved_at, self._dirty = now, False

    def remove(self) -> None:
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()


def _parse_state(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        doc = None
    valid = (
        isinstance(doc, dict)
        and doc.get("keybroker_rewrap_state") == _STATE_FORMAT
        and isinstance(doc.get("prefix"), str)
        and isinstance(doc.get("kek_version"), str)
        and isinstance(doc.get("last_done"), str)
    )
    if not valid:
        raise ValueError(f"{path} is not a keybroker rewrap state file")
    return dict(doc)
