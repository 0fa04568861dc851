"""The tamper-evident audit log: one hash-chained JSON line per decision.

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

What a chain cannot detect on its own: whole lines cut off the *end* of the newest file.
Record :attr:`VerifyResult.last_hash` elsewhere (or ship lines off the host) to close that.

Writers: every append happens under an exclusive ``flock`` of the directory, after checking
that ``audit.log`` is still the file we hold and whether anyone appended since our last line
(size and inode); only then is the file's last line re-read.  So several worker processes can
share one directory and the chain stays one chain, whether each opened the log itself or
inherited it across ``fork()``.  A file whose last line is broken (a crash
mid-write) is moved aside and a new chain begins; :func:`verify` reports the broken line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from keybroker.config import AuditConfig
from keybroker.context import RequestContext
from keybroker.errors import ConfigError
from keybroker.redact import SECRETS, SecretRegistry, is_secret_name
from keybroker.secret import Secret

__all__ = [
    "AUDIT_FILE_NAME",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_SIZE_MB",
    "GENESIS",
    "MAX_LINE_BYTES",
    "AuditLog",
    "VerifyResult",
    "audit_files",
    "request_event",
    "verify",
]

AUDIT_FILE_NAME = "audit.log"
DEFAULT_MAX_AGE_DAYS = 90
DEFAULT_MAX_SIZE_MB = 100
GENESIS = hashlib.sha256(b"keybroker-audit-v1").hexdigest()
MAX_LINE_BYTES = 64 * 1024  # an audit line is a record, not a dump channel

Clock = Callable[[], float]
Scalar = str | int | float | bool | None

_RESERVED = frozenset({"time", "seq", "prev", "start", "hash"})
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")
_HASH_KEY = b',"hash":"'
_SEALED = re.compile(rb'(\{.*),"hash":"([0-9a-f]{64})"\}\Z', re.DOTALL)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_STAMP = "%Y%m%dT%H%M%SZ"
_ROTATED = re.compile(re.escape(AUDIT_FILE_NAME) + r"\.(\d{8}T\d{6}Z)(?:\.(\d{1,6}))?\Z")
_DAY = 86400.0
_log = logging.getLogger("keybroker.audit")


# --- one line ---------------------------------------------------------------------------


def _seal(body: Mapping[str, object]) -> tuple[bytes, str]:
    """The finished line for ``body`` (newline included) and its hash."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    prefix = text[:-1].encode("ascii")  # without the closing brace
    digest = hashlib.sha256(prefix).hexdigest()
    return prefix + _HASH_KEY + digest.encode("ascii") + b'"}\n', digest


def _open_line(raw: bytes) -> tuple[dict[str, object], str] | str:
    """The body and hash of one line (newline stripped), or why it is not a sound line."""
    match = _SEALED.fullmatch(raw)
    if match is None:
        return "malformed line (no trailing hash field)"
    prefix, digest = match.group(1), match.group(2).decode("ascii")
    try:
        body = json.loads(prefix.decode("utf-8") + "}")
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return "bad JSON"
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


def _rfc3339(now: float) -> str:
    moment = datetime.fromtimestamp(now, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _clean_event(event: Mapping[str, object], registry: SecretRegistry) -> dict[str, object]:
    """A copy of ``event`` fit for the log.  Raises ``TypeError``/``ValueError`` on misuse."""
    if not isinstance(event, Mapping):
        raise TypeError("an audit event must be a mapping of field names to values")
    clean: dict[str, object] = {}
    for key, value in event.items():
        name = _check_key(key)
        if registry.scrub(name) != name:  # checked after the shape, so never echoed
            raise ValueError("an audit event field name holds a configured secret value")
        clean[name] = _clean_value(name, value, registry)
    return clean


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            "audit event field names must be 1-64 characters of A-Z a-z 0-9 _ . - "
            "(not starting with . or -)"
        )
    if key in _RESERVED:
        raise ValueError(f"audit event field {key!r} is reserved for the chain")
    if is_secret_name(key):
        raise ValueError(f"audit event field {key!r} looks like a credential; not recorded")
    return key


def _clean_value(name: str, value: object, registry: SecretRegistry) -> object:
    if name == "decision" and value not in ("allow", "deny"):
        raise ValueError("audit event field 'decision' must be 'allow' or 'deny'")
    if isinstance(value, list | tuple):
        return [_clean_scalar(name, item, registry) for item in value]
    return _clean_scalar(name, value, registry)


def _clean_scalar(name: str, value: object, registry: SecretRegistry) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit event field {name!r}: numbers must be finite")
        return value
    if isinstance(value, str):
        return registry.scrub(value)  # a configured secret never reaches the file
    if isinstance(value, Secret | bytes | bytearray | memoryview):
        raise TypeError(f"audit event field {name!r}: secrets and bytes are never recorded")
    raise TypeError(
        f"audit event field {name!r}: values must be str, int, float, bool, None "
        f"or a list of those, not {type(value).__name__}"
    )


_MAX_TEXT = 256  # request-derived strings are capped, as in the access log


def request_event(
    ctx: RequestContext, *, decision: str | None = None, now: float | None = None
) -> dict[str, object]:
    """The audit event of a finished proxied request.

    ``decision`` defaults to ``deny`` when the proxy itself refused or failed the request
    (``ctx.error_code`` set) and ``allow`` otherwise: a vendor's own error passed through is
    still a request the proxy allowed.  ``now`` is a :func:`time.perf_counter` reading
    (default: the current one) for ``latency_ms``.  Only the upstream ``host[:port]`` is kept,
    never a path or query.
    """
    elapsed = (time.perf_counter() if now is None else now) - ctx.started
    return {
        "request_id": _cap(ctx.request_id),
        "source_ip": _cap(ctx.remote),
        "mode": ctx.mode,
        "account": _cap(ctx.account),
        "vendor": _cap(ctx.vendor),
        "service": _cap(ctx.service),
        "region": _cap(ctx.region),
        "action": _cap(ctx.action),
        "upstream_host": _cap(_netloc(ctx.upstream_url)),
        "decision": decision or ("deny" if ctx.error_code else "allow"),
        "status": ctx.status,
        "latency_ms": round(max(elapsed, 0.0) * 1000, 3),
        "error_code": _cap(ctx.error_code),
    }


def _cap(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_TEXT]


def _netloc(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if host is None:
        return None
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


# --- file names -------------------------------------------------------------------------


def _rotated_key(name: str) -> tuple[str, int] | None:
    """``(stamp, n)`` of a rotated file's name (its place in the chain), else ``None``."""
    match = _ROTATED.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 0)


def _rotated(directory: Path) -> list[tuple[tuple[str, int], Path]]:
    found = []
    for entry in os.scandir(directory):
        key = _rotated_key(entry.name)
        if key is not None and entry.is_file(follow_symlinks=False):
            found.append((key, Path(entry.path)))
    return sorted(found)


def audit_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The audit files of ``directory`` in chain order: rotated ones, then ``audit.log``.

    Raises :class:`OSError` if the directory cannot be listed.
    """
    folder = Path(directory)
    files = [path for _, path in _rotated(folder)]
    live = folder / AUDIT_FILE_NAME
    return [*files, live] if live.is_file() else files


def _stamp_age(stamp: str) -> float:
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()


# --- the writer -------------------------------------------------------------------------


class AuditLog:
    """Appends hash-chained event lines to ``<directory>/audit.log``.

    Thread-safe, and safe for several processes sharing ``directory``.  ``clock`` (seconds
    since the epoch) stamps lines, names rotated files and decides their age.  ``registry``
    holds the configured secret values, masked wherever they turn up in a string field.
    ``directory=None`` gives a disabled log that checks events and writes nothing.  Raises
    :class:`OSError` if the file cannot be opened, :class:`ValueError` for a non-positive
    ``max_bytes`` or ``max_age_days``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        max_bytes: int = DEFAULT_MAX_SIZE_MB * 1024 * 1024,
        max_age_days: int = DEFAULT_MAX_AGE_DAYS,
        clock: Clock = time.time,
        registry: SecretRegistry = SECRETS,
    ) -> None:
        if max_bytes <= 0 or max_age_days <= 0:
            raise ValueError("max_bytes and max_age_days must be positive")
        self.directory = None if directory is None else Path(directory)
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self._clock = clock
        self._registry = registry
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._fd = -1
        self._closed = False
        # What we know of the chain's end, valid while the file is (dev, ino, size) = _seen.
        self._seen: tuple[int, int, int] | None = None
        self._prev, self._seq, self._start = GENESIS, 0, "genesis"
        if self.directory is not None:
            self._open()
            with self._dir_lock(), contextlib.suppress(OSError):
                self.prune()

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
            os.makedirs(output, mode=0o750, exist_ok=True)
            return cls(
                output,
                max_bytes=max_size * 1024 * 1024,
                max_age_days=max_age,
                clock=clock,
                registry=registry,
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

    def record(self, event: Mapping[str, object]) -> None:
        """Append one line holding ``event``'s fields.

        Raises :class:`ValueError` for a reserved, malformed or credential-like field name,
        a non-finite number, a line over 64 KiB or a closed log; :class:`TypeError` for a
        value that is not a str/int/float/bool/None (or a list of those) — ``bytes`` and
        :class:`~keybroker.secret.Secret` included; :class:`OSError` if the write fails.
        """
        fields = _clean_event(event, self._registry)
        size = len(json.dumps(fields, ensure_ascii=True, allow_nan=False))
        if size > MAX_LINE_BYTES - 512:  # 512: room for time, seq, prev, start and hash
            raise ValueError(f"audit event too large ({size} bytes of fields)")
        with self._lock:
            if self._closed:
                raise ValueError("audit log is closed")
            if self.directory is None:
                return
            with self._dir_lock():
                self._append(fields)

    def close(self) -> None:
        """Close the file; later :meth:`record` calls raise ``ValueError``.  Idempotent."""
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

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
        for (stamp, _), path in _rotated(self.directory):
            if _stamp_age(stamp) < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted += 1
        return deleted

    # -- under the locks --

    def _append(self, fields: dict[str, object]) -> None:
        try:
            self._sync()
            line, digest = self._line(fields)
            used = self._seen[2] if self._seen is not None else 0
            if used > 0 and used + len(line) > self.max_bytes:
                self._rotate()
                line, digest = self._line(fields)
            _write_all(self._fd, line)
        except BaseException:
            self._seen = None  # whatever happened, re-read the file next time
            raise
        self._prev, self._seq, self._start = digest, self._seq + 1, ""
        st = os.fstat(self._fd)
        self._seen = (st.st_dev, st.st_ino, st.st_size)

    def _line(self, fields: dict[str, object]) -> tuple[bytes, str]:
        body: dict[str, object] = {
            "time": _rfc3339(self._clock()),
            "seq": self._seq + 1,
            "prev": self._prev,
        }
        if self._start:
            body["start"] = self._start
        body.update(fields)
        return _seal(body)

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
        self._seen = (st.st_dev, st.st_ino, st.st_size)
        if st.st_size > 0:
            self._resume(_tail(self._fd, st.st_size), self._path_or_raise())
            return
        self._continue_from_rotated()
        if lost is not None and lost[1] > self._seq:
            # The file we were writing was deleted, not rotated: chain on from its real end,
            # so verify sees the gap instead of a clean continuation of an older file.
            _log.warning("audit file %s was deleted; its lines are gone", AUDIT_FILE_NAME)
            (self._prev, self._seq), self._start = lost, "rotated"

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

    def _continue_from_rotated(self) -> None:
        directory = self._dir_or_raise()
        previous = _rotated(directory)
        if not previous:
            self._prev, self._seq, self._start = GENESIS, 0, "genesis"
            return
        last = previous[-1][1]
        fd = os.open(last, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            tail = _tail(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._resume(tail, last)
        if not self._start:
            self._start = "rotated"

    def _rotate(self) -> None:
        directory = self._dir_or_raise()
        now = datetime.fromtimestamp(self._clock(), tz=UTC).strftime(_STAMP)
        existing = _rotated(directory)
        # Names must sort in chain order even if the clock stepped back.
        stamp, n = now, 0
        if existing and existing[-1][0][0] >= now:
            stamp, n = existing[-1][0][0], existing[-1][0][1] + 1
        name = f"{AUDIT_FILE_NAME}.{stamp}" + (f".{n}" if n else "")
        _move(self._path_or_raise(), directory / name)
        os.close(self._fd)
        self._fd = -1
        self._open()
        self._start = "rotated"
        st = os.fstat(self._fd)
        self._seen = (st.st_dev, st.st_ino, st.st_size)
        with contextlib.suppress(OSError):  # a failed clean-up must not stop auditing
            self.prune()

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
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


def _move(source: Path, target: Path) -> None:
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write; loop only on a short write
        view = view[os.write(fd, view) :]


def _tail(fd: int, size: int) -> tuple[str, int] | str:
    """``(hash, seq)`` of the last line of a file of ``size`` bytes, or what is wrong."""
    chunk = os.pread(fd, min(size, MAX_LINE_BYTES + 1), max(0, size - MAX_LINE_BYTES - 1))
    if not chunk.endswith(b"\n"):
        return "incomplete last line"
    opened = _open_line(chunk[:-1].rsplit(b"\n", 1)[-1])
    if isinstance(opened, str):
        return opened
    body, digest = opened
    seq = body["seq"]
    return (digest, seq) if isinstance(seq, int) else "invalid field 'seq'"


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


def verify(path: str | os.PathLike[str]) -> VerifyResult:
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
    walk = _Walk()
    for number, file in enumerate(files):
        broken = _verify_file(file, walk, rotated=not single and number < len(files) - 1)
        if broken is not None:
            line, reason = broken
            return VerifyResult(False, walk.lines, walk.files, file, line, reason, walk.first_seq)
    return VerifyResult(True, walk.lines, walk.files, None, None, None, walk.first_seq, walk.prev)


def _verify_file(file: Path, walk: _Walk, *, rotated: bool) -> tuple[int, str] | None:
    walk.files += 1
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
    opened = _open_line(raw)
    if isinstance(opened, str):
        return opened
    body, digest = opened
    seq, prev, start = body["seq"], str(body["prev"]), body.get("start")
    if not isinstance(seq, int):  # checked by _open_line already; this narrows the type
        return "invalid or missing field 'seq'"
    problem = _verify_start(start, first, seq, prev, walk) or _verify_link(seq, prev, walk)
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
