"""Prometheus metrics without a client library: counters, gauges and histograms
(:mod:`~keybroker.metrics.families`), a registry shared by worker processes
(:mod:`~keybroker.metrics.registry`), and the proxy's and KMS's instruments
(:mod:`~keybroker.metrics.instruments`).

May import: the foundation modules only.
"""

from keybroker.metrics.instruments import DEFAULT, ProxyMetrics

__all__ = ["DEFAULT", "ProxyMetrics"]
