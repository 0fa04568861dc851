"""The metrics :class:`Registry`: families defined together, rendered together, and summed
across worker processes.

*Several worker processes, one answer.*  When a directory is configured (the ``directory``
argument, or ``KEYBROKER_METRICS_DIR`` set by the supervisor for its workers), each process
writes a snapshot of its values to ``w-<pid>.json`` there (atomic replace, at most every
``flush_interval`` seconds while values change, and at exit); a scrape in any worker sums
those files with its own live values.  Counters and histograms of a worker that has exited
stay in the sum, so totals never go backwards when a worker is replaced; its gauges are
dropped.  A forked child starts with empty counters: what its parent counted stays the
parent's.  Without a directory a scrape shows this process's values only.  A file written by
another process is checked against this registry's metric definitions before it is summed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from keybroker.metrics.families import (
    Counter,
    Family,
    Gauge,
    Histogram,
    Key,
    Merged,
    escape_help,
)

__all__ = ["ENV_DIR", "Registry"]

log = logging.getLogger("keybroker.metrics")

ENV_DIR = "KEYBROKER_METRICS_DIR"

_F = TypeVar("_F", bound=Family[Any])


class Registry:
    """A set of metrics, rendered together.

    ``directory``: where worker processes share their values (default: the environment's
    ``KEYBROKER_METRICS_DIR``, read when this process first records something).  Raises
    ``ValueError`` for a bad ``max_series``/``flush_interval`` or a metric registered twice.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        max_series: int = 1000,
        flush_interval: float = 1.0,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        if not flush_interval > 0:
            raise ValueError("flush_interval must be positive")
        self.max_series, self.flush_interval = max_series, flush_interval
        self._explicit_dir = os.fspath(directory) if directory is not None else None
        self._families: dict[str, Family[Any]] = {}
        self._shards: list[list[dict[Key, Any]]] = []  # one per thread that recorded
        self._after_fork()
        _REGISTRIES.add(self)

    # ------------------------------------------------------------------ definitions

    def counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(self, name, doc, labelnames))

    def gauge(
        self, name: str, doc: str, labelnames: Sequence[str] = (), aggregate: str = "sum"
    ) -> Gauge:
        return self._add(Gauge(self, name, doc, labelnames, aggregate))

    def histogram(
        self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return self._add(Histogram(self, name, doc, labelnames, buckets))

    def _add(self, family: _F) -> _F:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name} is already registered")
            family._index = len(self._families)
            self._families[family.name] = family
            for shard in self._shards:
                shard.append({})
        return family

    def _new_shard(self) -> list[dict[Key, Any]]:
        with self._lock:
            shard: list[dict[Key, Any]] = [{} for _ in self._families]
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    # ------------------------------------------------------------------ exposition

    def render(self) -> str:
        """The text exposition (format 0.0.4) of every metric, summed over the workers."""
        merged = self.collect()
        lines: list[str] = []
        for fam in self._families.values():
            lines.append(f"# HELP {fam.name} {escape_help(fam.doc)}")
            lines.append(f"# TYPE {fam.name} {fam.kind}")
            lines.extend(fam._samples(merged[fam.name]))
        return "\n".join(lines) + "\n"

    def collect(self) -> dict[str, Merged]:
        """Values per metric name, label values as strings: this process's, plus the other
        workers' snapshots when a directory is configured."""
        merged: dict[str, Merged] = {name: {} for name in self._families}
        self._merge_in(merged, self.snapshot(), live=True)
        for snap, live in self._peer_snapshots():
            self._merge_in(merged, snap, live)
        return merged

    def snapshot(self) -> dict[str, list[tuple[Key, Any]]]:
        """A copy of this process's values: metric name -> [(label values, value)]."""
        with self._lock:
            return {name: list(fam._copy().items()) for name, fam in self._families.items()}

    def _merge_in(self, merged: dict[str, Merged], snap: dict[str, Any], live: bool) -> None:
        for name, series in snap.items():
            fam = self._families.get(name)
            if fam is None:
                continue
            for labels, value in series:
                fam._merge(merged[name], tuple(str(v) for v in labels), value, live)

    # ------------------------------------------------------------------ sharing

    def _after_fork(self) -> None:
        # The child has one thread: its values start afresh (the parent's counts stay the
        # parent's) except gauges, a state it inherits.  A lock another thread held at
        # fork() would never be released here: a new one.
        gauges = {f._index: f._copy() for f in self._families.values() if f.kind == "gauge"}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._local = threading.local()
        self._shards = []
        shard = self._new_shard()
        for fam in self._families.values():
            shard[fam._index].update(gauges.get(fam._index, {}))
            fam._keys = set(shard[fam._index])
        self._dirty = False
        self._pid = os.getpid()
        self._dir: str | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._retired_old = False

    def _mark_dirty(self) -> None:
        """Called after the first change since a flush; starts the flusher once."""
        self._dirty = True
        if self._flusher is not None:
            return
        with self._lock:
            if self._flusher is None:
                self._dir = self._directory()
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="keybroker-metrics", daemon=True
                )
                if self._dir is not None:
                    self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if self._dirty:
                self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except OSError as exc:  # metrics must never take a worker down
            self._dirty = True  # try again on the next tick
            log.warning("metrics snapshot not written: %s", type(exc).__name__)

    def flush(self) -> None:
        """Write this process's snapshot now (no-op without a directory).  Raises ``OSError``
        when the directory cannot be written."""
        self._dir = self._dir or self._directory()
        if self._dir is None:
            return
        # one flush at a time (the flusher and the exit hook): an older snapshot must never
        # replace a newer one, and two writers must not share the temporary file
        with self._flush_lock:
            self._write_snapshot(self._dir)

    def _write_snapshot(self, directory: str) -> None:
        with self._lock:
            # cleared before copying: a change made meanwhile marks the registry dirty again
            self._dirty = False
            snap = {n: [[k, v] for k, v in f._copy().items()] for n, f in self._families.items()}
        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, f"w-{self._pid}.json")
        if not self._retired_old:
            # a file under our pid is a dead process's (pid reuse): keep its counts
            with contextlib.suppress(FileNotFoundError):
                os.replace(final, os.path.join(directory, f"r-{self._pid}-{time.time_ns()}.json"))
            self._retired_old = True
        tmp = os.path.join(directory, f".w-{self._pid}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"pid": self._pid, "metrics": snap}, fh, separators=(",", ":"))
        os.replace(tmp, final)

    def close(self) -> None:
        """Stop the flusher and write a last snapshot."""
        self._stop.set()
        if self._flusher is not None and self._flusher.is_alive():
            self._flusher.join()
        self._flush_quietly()

    def _directory(self) -> str | None:
        return self._explicit_dir or os.environ.get(ENV_DIR) or None

    def _peer_snapshots(self) -> Iterable[tuple[dict[str, Any], bool]]:
        directory = self._directory()
        if directory is None:
            return
        try:
            names = os.listdir(directory)
        except OSError:
            return
        own = f"w-{os.getpid()}.json"
        for fname in sorted(names):
            if fname == own or not fname.endswith(".json") or fname[:2] not in ("w-", "r-"):
                continue
            snap = self._read_peer(os.path.join(directory, fname))
            if snap is not None:
                pid, metrics = snap
                yield metrics, fname.startswith("w-") and _alive(pid)

    def _read_peer(self, path: str) -> tuple[int, dict[str, Any]] | None:
        try:
            with open(path, encoding="utf-8") as fh:
                return _validated(json.load(fh), self._families)
        except (OSError, ValueError) as exc:  # vanished, half-written by hand, not ours
            log.debug("metrics snapshot %s skipped: %s", os.path.basename(path), exc)
            return None


_REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for reg in list(_REGISTRIES):
        reg._after_fork()


def _flush_at_exit() -> None:
    for reg in list(_REGISTRIES):
        if reg._pid == os.getpid() and reg._dirty:
            reg._flush_quietly()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_flush_at_exit)


# ---------------------------------------------------------------------- peer snapshots


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _validated(doc: Any, families: dict[str, Family[Any]]) -> tuple[int, dict[str, Any]]:
    """A peer snapshot checked against our metric definitions; ``ValueError`` if malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pid"), int):
        raise ValueError("not a metrics snapshot")
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError("not a metrics snapshot")
    out: dict[str, Any] = {}
    for name, series in metrics.items():
        fam = families.get(name)
        if fam is None:
            continue  # a metric another version has
        if not isinstance(series, list):
            raise ValueError(f"bad series list for {name}")
        out[name] = [_checked_series(fam, item) for item in series]
    return doc["pid"], out


def _checked_series(fam: Family[Any], item: Any) -> tuple[list[Any], Any]:
    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], list)):
        raise ValueError(f"bad series in {fam.name}")
    labels, value = item
    if len(labels) != len(fam.labelnames) or not all(isinstance(v, str | int) for v in labels):
        raise ValueError(f"bad labels in {fam.name}")
    if isinstance(fam, Histogram):
        if not isinstance(value, list) or len(value) != len(fam.bounds) + 2:
            raise ValueError(f"bad histogram row in {fam.name}")
        if not all(_is_num(v) for v in value):
            raise ValueError(f"bad histogram row in {fam.name}")
    elif not _is_num(value):
        raise ValueError(f"bad value in {fam.name}")
    return labels, value


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
