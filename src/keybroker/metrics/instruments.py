"""Prometheus metrics for the proxy and the KMS, without a client library.

Counters, gauges and histograms with labels (:mod:`keybroker.metrics.families`), rendered in
the Prometheus text exposition format 0.0.4.  Observing is a dict update in the calling thread's
own shard (no lock, and no update lost between threads); text is built only when scraped.  A
proxied request costs about a microsecond (``python -m bench.metrics_cost``).

*Several worker processes, one answer.*  A :class:`Registry`
(:mod:`keybroker.metrics.registry`) given a directory, or ``KEYBROKER_METRICS_DIR`` set by the
supervisor for its workers, sums every worker's values into each scrape; without one a scrape
shows this process's values only.

*Bounded cardinality.*  Each metric keeps at most ``max_series`` label sets; observations for
further ones are counted under one series whose label values are all ``"other"``.

This module holds the metrics keybroker exports (:class:`ProxyMetrics`), the process-wide
:data:`DEFAULT` set, and shortcuts to it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from keybroker import __version__
from keybroker.context import RequestContext
from keybroker.errors import Forbidden, UpstreamError
from keybroker.metrics.registry import Registry

if TYPE_CHECKING:
    from keybroker.settings import Endpoint

__all__ = [
    "DEFAULT",
    "DURATION_BUCKETS",
    "KMSOperations",
    "ProxyMetrics",
    "config_reload",
    "credential_expiries",
    "kms_op",
]

DURATION_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
DURATION_BUCKETS += (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REPLAY_CODE = "Proxy.Replay"


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
            "keybroker_upstream_errors_total",
            "Upstreams that could not be reached, by vendor and kind (dns, refused, timeout, "
            "tls, tls-certificate, reset, protocol, unreachable).",
            ("vendor", "kind"),
        )
        self.inflight = r.gauge("keybroker_inflight_requests", "Requests being served now.")
        self.replay_rejections = r.counter(
            "keybroker_replay_rejections_total", "Requests refused as replays."
        )
        self.policy_denials = r.counter(
            "keybroker_policy_denials_total", "Requests refused by policy.", ("account",)
        )
        self.replay_cache_errors = r.counter(
            "keybroker_replay_cache_errors_total",
            "Requests refused (503) because the replay cache could not answer.",
        )
        self.audit_failures = r.counter(
            "keybroker_audit_failures_total",
            "Audit records that could not be written, by sink (file: the request was refused "
            "unless Audit.FailClosed is false; mirror: the second sink only).",
            ("sink",),
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
        self.credential_expiry = r.gauge(
            "keybroker_credential_expiry_timestamp_seconds",
            "When the soonest-expiring proxy credential of an account expires (Unix time; "
            "only accounts whose proxy credentials have ExpiresAt).",
            ("account",),
            "max",
        )
        self._expiring: set[str] = set()
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
            self._count_error(ctx.error_code, account, vendor, ctx.upstream_failure)

    def _count_error(self, code: str, account: str, vendor: str, kind: str | None) -> None:
        if code == UpstreamError.code:
            self.upstream_errors.inc((vendor, kind or "unreachable"))
        elif code == Forbidden.code:
            self.policy_denials.inc((account,))
        elif code == REPLAY_CODE:
            self.replay_rejections.inc()

    def kms_op(self, backend: str, operation: str, outcome: str) -> None:
        """Count one KMS operation, e.g. ``kms_op("aws", "wrap", "ok")``."""
        self.kms_operations.inc((backend, operation, outcome))

    def credentials(self, expiries: Mapping[str, float]) -> None:
        """Publish each account's soonest proxy-credential expiry (Unix time), replacing the
        last set: an account that has none any more reads NaN (no alert fires on NaN)."""
        for account in self._expiring - expiries.keys():
            self.credential_expiry.set((account,), math.nan)
        for account, when in expiries.items():
            self.credential_expiry.set((account,), when)
        self._expiring |= set(expiries)

    def config_reload(self, result: str) -> None:
        """Count one config reload: ``"ok"`` or ``"rejected"``."""
        self.config_reloads.inc((result,))

    def render(self) -> str:
        return self.registry.render()


DEFAULT = ProxyMetrics()


def kms_op(backend: str, operation: str, outcome: str) -> None:
    """Count a KMS operation on the default registry."""
    DEFAULT.kms_op(backend, operation, outcome)


class KMSOperations:
    """A KMS observer (:class:`keybroker.kms.KMSObserver`) that counts each operation in
    ``keybroker_kms_operations_total`` of the default registry: what the key service and the
    config's Seal section give the KMS they build."""

    def operation(self, backend: str, operation: str, outcome: str) -> None:
        kms_op(backend, operation, outcome)


def config_reload(result: str) -> None:
    """Count a config reload on the default registry."""
    DEFAULT.config_reload(result)


def credential_expiries(endpoints: Iterable[Endpoint]) -> None:
    """Publish the proxy credentials' expiry of a config's accounts on the default registry."""
    expiries: dict[str, float] = {}
    for endpoint in endpoints:
        times = [
            c.expires_at.timestamp()
            for c in (endpoint.proxy, *endpoint.additional_proxies)
            if c.expires_at is not None
        ]
        if times:
            expiries[endpoint.cloud_account_name] = min(times)
    DEFAULT.credentials(expiries)
