"""Prometheus metric families and their text exposition, without a client library.

:class:`Counter`, :class:`Gauge` and :class:`Histogram` keep their values per label set, in the
calling thread's own shard of their :class:`~keybroker.metrics.registry.Registry` (no lock, and
no update lost between threads); the helpers at the end format samples in the Prometheus text
exposition format 0.0.4.

*Bounded cardinality.*  Each metric keeps at most ``max_series`` label sets; observations for
further ones are counted under one series whose label values are all ``"other"``.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["CONTENT_TYPE", "Counter", "Family", "Gauge", "Histogram", "Shards", "escape_help"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"

LabelValue = str | int
Key = tuple[LabelValue, ...]
Merged = dict[tuple[str, ...], Any]  # label values -> float, or a histogram row
V = TypeVar("V")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Shards(Protocol):
    """Where a family keeps its values: its :class:`~keybroker.metrics.registry.Registry`,
    which holds one shard (a list with one dict per family) for each thread that recorded,
    bounds the label sets, and is told when its values first change after a flush."""

    max_series: int
    _lock: threading.Lock
    _local: threading.local
    _shards: list[list[dict[Key, Any]]]
    _dirty: bool

    def _new_shard(self) -> list[dict[Key, Any]]: ...

    def _mark_dirty(self) -> None: ...


class Family(Generic[V]):
    """What counters, gauges and histograms share: a name, help text, label names, and
    values per label set in the calling thread's shard of ``registry``."""

    kind = ""

    def __init__(self, registry: Shards, name: str, doc: str, labelnames: Sequence[str]):
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


class Counter(Family[float]):
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


class Gauge(Family[float]):
    """A value that goes up and down.  Across processes ``aggregate="sum"`` adds the values
    of live processes, ``"max"`` takes the largest (e.g. a build-info 1)."""

    kind = "gauge"

    def __init__(
        self,
        registry: Shards,
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


class Histogram(Family[list[float]]):
    """Observations counted into buckets (upper bounds ``buckets``, plus ``+Inf``).

    A series is stored as one list: a count per bucket (not cumulative), then the sum.
    """

    kind = "histogram"

    def __init__(
        self,
        registry: Shards,
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


# ---------------------------------------------------------------------- helpers


def _capped(values: Collection[Any], key: Any, other: Any, cap: int) -> Any:
    """``key``, or the overflow key once ``cap`` label sets (not counting it) are held."""
    if key in values or len(values) - (other in values) < cap:
        return key
    return other


def _add_row(into: list[float], row: Sequence[float]) -> None:
    for i, v in enumerate(row):
        into[i] += v


# ---------------------------------------------------------------------- text exposition


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


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _num(v: float) -> str:
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))
