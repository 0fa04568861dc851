"""PNG charts next to the JSON (matplotlib, the ``bench`` extra): requests/s direct vs
proxied per concurrency, proxy CPU per request, latency percentiles, large transfers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(results: dict[str, Any], stem: Path) -> list[Path]:
    """Write ``<stem>-*.png``; [] (and a note) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (the bench extra): no plots", flush=True)
        return []
    written = []
    for name, draw in (
        ("throughput", _throughput),
        ("latency", _latency),
        ("transfers", _transfers),
    ):
        fig = draw(plt, results)
        if fig is None:
            continue
        path = stem.with_name(f"{stem.name}-{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


_FLOOR_MARKS = {"aiohttp": "^", "keybroker": "v"}


def _throughput(plt: Any, results: dict[str, Any]) -> Any:
    rows = results.get("throughput", [])
    if not rows:
        return None
    vendors = sorted({r["vendor"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours: dict[str, str] = {}
    for vendor in vendors:
        mine = [r for r in rows if r["vendor"] == vendor]
        conns = [r["connections"] for r in mine]
        axes[0].plot(conns, [r["direct"]["rps"] for r in mine], "o--", label=f"{vendor} direct")
        (line,) = axes[0].plot(
            conns, [r["proxied"]["rps"] for r in mine], "o-", label=f"{vendor} proxied"
        )
        colours[vendor] = line.get_color()  # its floors are drawn in the same colour
        cpu = [r["proxied"]["proxy_cpu_us_per_request"] for r in mine]
        axes[1].plot(conns, cpu, "o-", label=vendor)
    for r in results.get("floor", []):
        p = r["proxied"]
        layer = r.get("layer", "aiohttp")
        style = {"marker": _FLOOR_MARKS.get(layer, "x"), "color": colours.get(r["vendor"], "k")}
        label = f"{r['vendor']} {layer} floor"
        axes[0].plot([r["connections"]], [p["rps"]], linestyle="", label=label, **style)
        axes[1].plot([r["connections"]], [p["proxy_cpu_us_per_request"]], linestyle="", **style)
    axes[0].set(title="requests/s (log scale)", xlabel="connections", yscale="log")
    axes[1].axhline(60, color="grey", linestyle=":", label="target 60 µs")
    axes[1].set(
        title="proxy CPU per request, µs (floors: ▲ aiohttp, ▼ keybroker HTTP)",
        xlabel="connections",
    )
    ticks = sorted({r["connections"] for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def _latency(plt: Any, results: dict[str, Any]) -> Any:
    rows = results.get("latency", [])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    qs = ["p50", "p90", "p99"]
    width = 0.2
    for i, r in enumerate(rows):
        for j, side in enumerate(("direct", "proxied")):
            values = [r[side]["latency_ms"][q] for q in qs]
            xs = [k + (2 * i + j - 1.5) * width for k in range(len(qs))]
            ax.bar(xs, values, width, label=f"{r['vendor']} {side} @ {r['rate']:.0f}/s")
    ax.set_xticks(range(len(qs)), qs)
    ax.set(title="latency at a fixed rate (open loop), ms", yscale="log")
    ax.legend(fontsize=8)
    return fig


def _transfers(plt: Any, results: dict[str, Any]) -> Any:
    large = results.get("large")
    if not large:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    kinds = ["upload", "download"]
    sides = [s for s in ("direct", "proxied", "relay") if all(s in large[k] for k in kinds)]
    width = 0.8 / len(sides)
    for j, side in enumerate(sides):
        values = [large[k][side]["mb_per_s"] for k in kinds]
        xs = [k + (j - (len(sides) - 1) / 2) * width for k in range(2)]
        label = "bare relay" if side == "relay" else side
        axes[0].bar(xs, values, width, label=label)
    axes[0].set_xticks(range(2), kinds)
    axes[0].set(title=f"{large['bytes'] >> 20} MiB transfer, MB/s")
    axes[0].legend()
    labels = [*kinds, *[f"posts {k}" for k in results.get("posts", {})]]
    peaks = [large[k]["rss"]["peak_worker_mb"] for k in kinds]
    peaks += [v["peak_worker_mb"] for v in results.get("posts", {}).values()]
    axes[1].bar(range(len(labels)), peaks)
    axes[1].axhline(150, color="grey", linestyle=":", label="target 150 MB")
    axes[1].set_xticks(range(len(labels)), labels, fontsize=8)
    axes[1].set(title="peak worker RSS, MB")
    axes[1].legend()
    return fig
