"""Targets, the printed table and the JSON file.

Targets (from the issue; key-proxy, the Go original, for comparison where it was measured):
proxied/direct requests/s >= 0.5 (key-proxy: 0.22 AWS, 0.28 Volcengine); proxy CPU <= 60 µs per
request; median added latency <= 1 ms at 25% load; 1 GiB up/down through the proxy with peak
worker RSS <= 150 MB and >= 50% of direct throughput; 8 x 5 MB POSTs grow RSS <= 50 MB
(key-proxy: 14 -> ~250 MB); cluster KMS >= 100,000 DEKs/s; cached external >= 50,000/s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Target", "evaluate", "print_table", "write_json"]


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    unit: str
    higher_is_better: bool
    reference: str = ""

    @property
    def ok(self) -> bool | None:
        if self.measured is None:
            return None
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def _peak(rows: list[dict[str, Any]], vendor: str) -> dict[str, Any] | None:
    mine = [r for r in rows if r["vendor"] == vendor]
    return max(mine, key=lambda r: r["proxied"]["rps"]) if mine else None


def _peak_ratio(rows: list[dict[str, Any]], vendor: str) -> float | None:
    mine = [r for r in rows if r["vendor"] == vendor]
    if not mine:
        return None
    direct = max(r["direct"]["rps"] for r in mine)
    proxied = max(r["proxied"]["rps"] for r in mine)
    return round(proxied / direct, 3) if direct else None


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate(results: dict[str, Any]) -> list[Target]:
    """Every target with the measured value (None when that part did not run)."""
    rows = results.get("throughput", [])
    out = []
    go = {"aws": "key-proxy 0.22x", "volcengine": "key-proxy 0.28x"}
    for vendor in ("aws", "volcengine"):
        out.append(
            Target(
                f"{vendor}: proxied/direct req/s (peak/peak)",
                _peak_ratio(rows, vendor),
                0.5,
                "x",
                True,
                go[vendor],
            )
        )
        peak = _peak(rows, vendor)
        cpu = peak["proxied"]["proxy_cpu_us_per_request"] if peak else None
        out.append(Target(f"{vendor}: proxy CPU per request (at peak)", cpu, 60, "µs", False))
        on = [r for r in results.get("replay_on", []) if r["vendor"] == vendor]
        cpu_on = on[0]["proxied"]["proxy_cpu_us_per_request"] if on else None
        out.append(Target(f"{vendor}: proxy CPU per request, replay on", cpu_on, 60, "µs", False))
        lat = [r for r in results.get("latency", []) if r["vendor"] == vendor]
        added = lat[0]["added_ms"]["p50"] if lat else None
        out.append(Target(f"{vendor}: added median latency at 25% load", added, 1.0, "ms", False))
    large = results.get("large", {})
    size = size_label(large.get("bytes"))
    for kind in ("upload", "download"):
        rss = _get(large, kind, "rss", "peak_worker_mb")
        out.append(Target(f"{size} {kind}: peak worker RSS", rss, 150, "MB", False))
        ratio = _get(large, kind, "ratio")
        out.append(Target(f"{size} {kind}: proxied/direct throughput", ratio, 0.5, "x", True))
    for kind in ("streamed", "buffered"):
        out.append(
            Target(
                f"8 x 5 MB POSTs ({kind}): RSS growth, all workers",
                _get(results, "posts", kind, "growth_all_workers_mb"),
                50,
                "MB",
                False,
                "key-proxy ~236 MB",
            )
        )
    kms = results.get("kms", {})
    out.append(Target("cluster KMS get_dek", kms.get("cluster_deks_per_s"), 100_000, "/s", True))
    out.append(
        Target(
            "cached external KMS get_dek", kms.get("external_cached_deks_per_s"), 50_000, "/s", True
        )
    )
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(results: dict[str, Any], targets: list[Target]) -> None:
    print()
    print(
        f"{'vendor':11} {'conns':>5} {'direct/s':>10} {'proxied/s':>10} {'ratio':>6} "
        f"{'CPU µs/req':>10} {'p50 ms':>7} {'p99 ms':>7} {'busy others':>11}"
    )
    for r in results.get("throughput", []):
        p = r["proxied"]
        print(
            f"{r['vendor']:11} {r['connections']:5d} {r['direct']['rps']:10.0f} "
            f"{p['rps']:10.0f} {r['ratio']:6.2f} {p['proxy_cpu_us_per_request']:10.0f} "
            f"{p['latency_ms']['p50']:7.2f} {p['latency_ms']['p99']:7.2f} "
            f"{p['foreign_cores']:8.2f} cores"
        )
    refs = [("Log.Level warn", r) for r in results.get("log_warn", [])]
    refs += [(_floor_label(r), r) for r in results.get("floor", [])]
    for label, r in refs:
        p = r["proxied"]
        print(
            f"{r['vendor']:11} {r['connections']:5d} {label:>21} {p['rps']:10.0f}/s"
            f" {p['proxy_cpu_us_per_request']:10.0f} µs/req {p['foreign_cores']:18.2f} cores"
        )
    _print_transfers(results.get("large"))
    print()
    print(f"{'target':52} {'measured':>10} {'target':>10}  {'':3} reference")
    for t in targets:
        mark = {True: "ok", False: "MISS", None: "n/a"}[t.ok]
        bound = (">= " if t.higher_is_better else "<= ") + _fmt(t.limit)
        print(
            f"{t.name:52} {_fmt(t.measured):>10} {bound + ' ' + t.unit:>13} {mark:4} {t.reference}"
        )
    print(
        "ok: the target is met; MISS: it is not (a target is the goal, not a test: the README's"
        " Benchmarks section explains each miss); n/a: not measured in this run."
    )
    print()


def size_label(n: object) -> str:
    """``1 GiB`` for the default transfer, ``64 MiB`` for ``--quick``'s."""
    if not isinstance(n, int) or n <= 0:
        return "large"
    return f"{n >> 30} GiB" if n % (1 << 30) == 0 else f"{n >> 20} MiB"


def _floor_label(row: dict[str, Any]) -> str:
    layer = row.get("layer", "aiohttp")  # results written before the keybroker floor
    return "keybroker HTTP floor" if layer == "keybroker" else f"{layer} floor"


def _print_transfers(large: dict[str, Any] | None) -> None:
    """MB/s direct, proxied and through the bare relay, with the three ratios."""
    if not large:
        return
    print()
    print(
        f"{'transfer':11} {'MiB':>5} {'direct':>10} {'proxied':>10} {'bare relay':>10}"
        f" {'prox/dir':>8} {'relay/dir':>9} {'prox/relay':>10}  (MB/s)"
    )
    for kind in ("upload", "download"):
        row = large.get(kind)
        if not row:
            continue
        relay = row.get("relay", {}).get("mb_per_s")
        print(
            f"{kind:11} {large['bytes'] >> 20:5d} {row['direct']['mb_per_s']:10.0f}"
            f" {row['proxied']['mb_per_s']:10.0f} {'—' if relay is None else f'{relay:.0f}':>10}"
            f" {row['ratio']:8.2f}"
            f" {_fmt(row.get('relay_ratio')):>9} {_fmt(row.get('proxied_vs_relay')):>10}"
        )


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return path
