"""Prometheus metrics for the proxy and the KMS, without a client library.

Counters, gauges and histograms with labels, rendered in the Prometheus text exposition
format 0.0.4.  Observing is a dict update in the calling thread's own shard (no lock, and no
update lost between threads); text is built only when scraped.  A proxied request costs about
a microsecond (``python -m bench.metrics_cost``).

*Several worker processes, one answer.*  When a directory is configured (the ``directory``
argument, or ``KEYBROKER_METRICS_DIR`` set by the supervisor for its workers), each process
writes a snapshot of its values to ``w-<pid>.json`` there (atomic replace, at most every
``flush_interval`` seconds while values change, and at exit); a scrape in any worker sums
those files with its own live values.  Counters and histograms of a worker that has exited
stay in the sum, so totals never go backwards when a worker is replaced; its gauges are
dropped.  A forked child starts with empty counters: what its parent counted stays the
parent's.  Without a directory a scrape shows this process's values only.

*Bounded cardinality.*  Each metric keeps at most ``max_series`` label sets; observations for
further ones are counted under one series whose label values are all ``"other"``.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Generic, TypeVar

from keybroker import __version__
from keybroker.context import RequestContext
from keybroker.errors import Forbidden, UpstreamError

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT",
    "DURATION_BUCKETS",
    "ENV_DIR",
    "Counter",
    "Gauge",
    "Histogram",
    "ProxyMetrics",
    "Registry",
    "config_reload",
    "kms_op",
]

log = logging.getLogger("keybroker.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENV_DIR = "KEYBROKER_METRICS_DIR"
OTHER = "other"
DURATION_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
DURATION_BUCKETS += (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REPLAY_CODE = "Proxy.Replay"

LabelValue = str | int
Key = tuple[LabelValue, ...]
Merged = dict[tuple[str, ...], Any]  # label values -> float, or a histogram row
V = TypeVar("V")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class _Family(Generic[V]):
    kind = ""

    def __init__(self, registry: Registry, name: str, doc: str, labelnames: Sequence[str]):
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for metric {name}")
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self._reg = registry
        self._index = -1  # position of this metric's dict in each thread's shard
        self._keys: set[Key] = set()  # label sets held by any thread (bounded)
        self._other: Key = (OTHER,) * len(labelnames)

    def _values(self) -> dict[Key, V]:
        """This thread's values (each thread writes only its own dicts: no lost updates)."""
        try:
            shard: list[dict[Key, V]] = self._reg._local.shard
        except AttributeError:
            shard = self._reg._new_shard()
        return shard[self._index]

    def _new_key(self, labels: Key) -> Key:
        """The key a label set new to this thread is stored under: itself, or ``other``."""
        if len(labels) != len(self.labelnames):
            raise ValueError(
                f"{self.name} takes {len(self.labelnames)} label values, got {len(labels)}"
            )
        with self._reg._lock:
            key: Key = _capped(self._keys, labels, self._other, self._reg.max_series)
            self._keys.add(key)
        return key

    def _copy(self) -> dict[Key, Any]:
        """All threads' values summed (the caller holds the lock)."""
        total: dict[Key, Any] = {}
        for shard in self._reg._shards:
            for key, value in list(shard[self._index].items()):
                total[key] = total.get(key, 0.0) + value
        return total

    def _merge(self, into: Merged, key: tuple[str, ...], value: Any, live: bool) -> None:
        key = _capped(into, key, self._other, self._reg.max_series)
        into[key] = into.get(key, 0.0) + value

    def _samples(self, merged: Merged) -> Iterable[str]:
        if not merged and not self.labelnames:
            merged = {(): 0.0}  # an unlabelled metric shows its zero
        for key in sorted(merged):
            yield f"{self.name}{_labels(self.labelnames, key)} {_num(merged[key])}"


class Counter(_Family[float]):
    """A value that only goes up.  ``inc`` raises ``ValueError`` for a negative amount or a
    wrong number of label values."""

    kind = "counter"

    def inc(self, labels: Key = (), amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name} is a counter: the amount must not be negative")
        try:  # inlined self._values(): this is the per-request path
            values = self._reg._local.shard[self._index]
        except AttributeError:
            values = self._values()
        if labels in values:
            values[labels] += amount
        else:
            key = self._new_key(labels)
            values[key] = values.get(key, 0.0) + amount
        if not self._reg._dirty:
            self._reg._mark_dirty()


class Gauge(_Family[float]):
    """A value that goes up and down.  Across processes ``aggregate="sum"`` adds the values
    of live processes, ``"max"`` takes the largest (e.g. a build-info 1)."""

    kind = "gauge"

    def __init__(
        self,
        registry: Registry,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        aggregate: str = "sum",
    ) -> None:
        if aggregate not in ("sum", "max"):
            raise ValueError("gauge aggregate must be 'sum' or 'max'")
        super().__init__(registry, name, doc, labelnames)
        self.aggregate = aggregate

    def inc(self, labels: Key = (), amount: float = 1.0) -> None:
        try:  # inlined self._values(): this is the per-request path
            values = self._reg._local.shard[self._index]
        except AttributeError:
            values = self._values()
        if labels in values:
            values[labels] += amount
        else:
            key = self._new_key(labels)
            values[key] = values.get(key, 0.0) + amount
        if not self._reg._dirty:
            self._reg._mark_dirty()

    def dec(self, labels: Key = (), amount: float = 1.0) -> None:
        try:
            values = self._reg._local.shard[self._index]
        except AttributeError:
            values = self._values()
        if labels in values:  # present: inc() came first in this thread
            values[labels] -= amount
        else:
            self.inc(labels, -amount)

    def set(self, labels: Key, value: float) -> None:
        """Set the value (meant for a gauge one thread writes; other threads' changes to the
        same series are zeroed)."""
        values = self._values()
        key = labels if labels in values else self._new_key(labels)
        with self._reg._lock:
            for shard in self._reg._shards:
                if key in shard[self._index]:
                    shard[self._index][key] = 0.0
        values[key] = value
        if not self._reg._dirty:
            self._reg._mark_dirty()

    def _merge(self, into: Merged, key: tuple[str, ...], value: Any, live: bool) -> None:
        if not live:  # a gauge of a process that is gone means nothing now
            return
        if self.aggregate == "sum" or key not in into:
            super()._merge(into, key, value, live)
        else:
            into[key] = max(into[key], value)


class Histogram(_Family[list[float]]):
    """Observations counted into buckets (upper bounds ``buckets``, plus ``+Inf``).

    A series is stored as one list: a count per bucket (not cumulative), then the sum.
    """

    kind = "histogram"

    def __init__(
        self,
        registry: Registry,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"histogram {name} may not have a label named 'le'")
        bounds = [float(b) for b in buckets]
        if not bounds or bounds != sorted(set(bounds)) or not all(map(math.isfinite, bounds)):
            raise ValueError(f"histogram {name} needs finite buckets in increasing order")
        super().__init__(registry, name, doc, labelnames)
        self.bounds = tuple(bounds)

    def observe(self, labels: Key, value: float) -> None:
        """Count ``value``; raises ``ValueError`` for NaN or a wrong number of labels."""
        if value != value:
            raise ValueError(f"{self.name}: cannot observe NaN")
        try:
            values = self._reg._local.shard[self._index]
        except AttributeError:
            values = self._values()
        row = values.get(labels)
        if row is None:
            key = self._new_key(labels)
            row = values.setdefault(key, [0.0] * (len(self.bounds) + 2))
        row[bisect.bisect_left(self.bounds, value)] += 1
        row[-1] += value
        if not self._reg._dirty:
            self._reg._mark_dirty()

    def _copy(self) -> dict[Key, Any]:
        total: dict[Key, Any] = {}
        for shard in self._reg._shards:
            for key, row in list(shard[self._index].items()):
                _add_row(total.setdefault(key, [0.0] * len(row)), list(row))
        return total

    def _merge(self, into: Merged, key: tuple[str, ...], value: Any, live: bool) -> None:
        key = _capped(into, key, self._other, self._reg.max_series)
        _add_row(into.setdefault(key, [0.0] * (len(self.bounds) + 2)), value)

    def _samples(self, merged: Merged) -> Iterable[str]:
        les = [*map(repr, self.bounds), "+Inf"]
        for key in sorted(merged):
            row, total = merged[key], 0.0
            for le, count in zip(les, row, strict=False):
                total += count
                labels = _labels((*self.labelnames, "le"), (*key, le))
                yield f"{self.name}_bucket{labels} {_num(total)}"
            labels = _labels(self.labelnames, key)
            yield f"{self.name}_sum{labels} {_num(row[-1])}"
            yield f"{self.name}_count{labels} {_num(total)}"


_F = TypeVar("_F", bound=_Family[Any])


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
        self._families: dict[str, _Family[Any]] = {}
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
            lines.append(f"# HELP {fam.name} {_escape_help(fam.doc)}")
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


# ---------------------------------------------------------------------- keybroker's metrics


class ProxyMetrics:
    """The metrics keybroker exports, on one :class:`Registry` (its own unless given)."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry if registry is not None else Registry()
        self.requests = r.counter(
            "keybroker_requests_total",
            "Proxied requests by account, vendor, mode and final HTTP status.",
            ("account", "vendor", "mode", "status"),
        )
        self.duration = r.histogram(
            "keybroker_request_duration_seconds",
            "Time from receiving a proxied request to the end of its answer.",
            ("vendor", "mode"),
            DURATION_BUCKETS,
        )
        self.upstream_errors = r.counter(
            "keybroker_upstream_errors_total", "Upstreams that could not be reached.", ("vendor",)
        )
        self.inflight = r.gauge("keybroker_inflight_requests", "Requests being served now.")
        self.replay_rejections = r.counter(
            "keybroker_replay_rejections_total", "Requests refused as replays."
        )
        self.policy_denials = r.counter(
            "keybroker_policy_denials_total", "Requests refused by policy.", ("account",)
        )
        self.kms_operations = r.counter(
            "keybroker_kms_operations_total",
            "KMS operations by backend, operation and outcome.",
            ("backend", "operation", "outcome"),
        )
        self.build_info = r.gauge(
            "keybroker_build_info", "The running keybroker version.", ("version",), "max"
        )
        self.config_reloads = r.counter(
            "keybroker_config_reloads_total", "Config reloads by result.", ("result",)
        )
        self.build_info.set((__version__,), 1)

    def observe(self, ctx: RequestContext) -> None:
        """Count one finished proxied request (its final status, duration and error code).
        Account and vendor come from the config; a request that found none is ``unknown``."""
        seconds = time.perf_counter() - ctx.started
        account, vendor, mode = ctx.account or "unknown", ctx.vendor or "unknown", ctx.mode
        key, hkey = (account, vendor, mode, ctx.status or 0), (vendor, mode)
        reg, requests, duration = self.registry, self.requests, self.duration
        # Counter.inc and Histogram.observe inlined on one shard lookup: this runs for every
        # request (bench/metrics_cost.py); new label sets take the ordinary path.
        try:
            shard = reg._local.shard
        except AttributeError:
            shard = reg._new_shard()
        counts = shard[requests._index]
        if key in counts:
            counts[key] += 1
        else:
            requests.inc(key)
        row = shard[duration._index].get(hkey)
        if row is None:
            duration.observe(hkey, seconds)
        else:
            row[bisect.bisect_left(duration.bounds, seconds)] += 1
            row[-1] += seconds
        if not reg._dirty:
            reg._mark_dirty()
        if ctx.error_code is not None:
            self._count_error(ctx.error_code, account, vendor)

    def _count_error(self, code: str, account: str, vendor: str) -> None:
        if code == UpstreamError.code:
            self.upstream_errors.inc((vendor,))
        elif code == Forbidden.code:
            self.policy_denials.inc((account,))
        elif code == REPLAY_CODE:
            self.replay_rejections.inc()

    def kms_op(self, backend: str, operation: str, outcome: str) -> None:
        """Count one KMS operation, e.g. ``kms_op("aws", "wrap", "ok")``."""
        self.kms_operations.inc((backend, operation, outcome))

    def config_reload(self, result: str) -> None:
        """Count one config reload: ``"ok"`` or ``"rejected"``."""
        self.config_reloads.inc((result,))

    def render(self) -> str:
        return self.registry.render()


# ---------------------------------------------------------------------- helpers


def _capped(values: Collection[Any], key: Any, other: Any, cap: int) -> Any:
    """``key``, or the overflow key once ``cap`` label sets (not counting it) are held."""
    if key in values or len(values) - (other in values) < cap:
        return key
    return other


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _validated(doc: Any, families: dict[str, _Family[Any]]) -> tuple[int, dict[str, Any]]:
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


def _checked_series(fam: _Family[Any], item: Any) -> tuple[list[Any], Any]:
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


def _add_row(into: list[float], row: Sequence[float]) -> None:
    for i, v in enumerate(row):
        into[i] += v


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return (
        "{"
        + ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
        + "}"
    )


def _escape_label(value: str) -> str:
    if not value.isascii():  # a lone surrogate cannot be sent as UTF-8
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _num(v: float) -> str:
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


DEFAULT = ProxyMetrics()


def kms_op(backend: str, operation: str, outcome: str) -> None:
    """Count a KMS operation on the default registry."""
    DEFAULT.kms_op(backend, operation, outcome)


def config_reload(result: str) -> None:
    """Count a config reload on the default registry."""
    DEFAULT.config_reload(result)
