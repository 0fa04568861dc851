"""The measurements, one function per phase; each prints a line per result and returns
JSON-ready rows."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from bench import signing
from bench.loadgen import LoadResult, open_loop, run_async
from bench.meter import Meter
from bench.procs import RssSampler, ready_when_open, serve_on_free_port
from bench.proxy_server import ProxyServer, keybroker_serve
from bench.signing import with_host
from bench.state import MIB, VENDORS, Bench
from bench.transfer import concurrent_posts, download, repeated, upload

__all__ = [
    "FLOOR_LAYERS",
    "floor",
    "large",
    "latency",
    "posts",
    "profile",
    "quiet_log",
    "replay_on",
    "sweep",
]


def _measured(
    bench: Bench, kb: ProxyServer | None, run: Callable[[], LoadResult]
) -> dict[str, Any]:
    with Meter(kb.pids if kb else [], [bench.upstream_pid]) as meter:
        result = run()
    out = result.as_dict()
    out["foreign_cores"] = round(meter.foreign_cores, 2)
    if kb is not None:
        out["proxy_cpu_us_per_request"] = round(meter.us_per_request(result.requests), 1)
    return out


def _open(port: int, requests: list[bytes], rate: float, seconds: float) -> LoadResult:
    targeted = [with_host(r, port) for r in requests]
    return run_async(lambda: open_loop(port, targeted, rate, seconds))


def _best(times: int, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The run with the most requests/s of ``times`` (how many were taken is recorded)."""
    runs = [measure() for _ in range(max(1, times))]
    best = max(runs, key=lambda r: float(r["rps"]))
    if times > 1:
        best["of_runs"] = [r["rps"] for r in runs]
    return best


def sweep(bench: Bench, kb: ProxyServer, pools: dict[str, list[bytes]]) -> list[dict[str, Any]]:
    """Direct vs proxied requests/s at each concurrency (replay cache off: a pool is cycled)."""
    s, rows = bench.settings, []
    for vendor in VENDORS:
        reqs = pools[vendor]
        bench.load(vendor, kb.port, reqs, 8, 1.0)  # warm-up: connections, caches
        for c in s.concurrencies:
            run_direct = partial(bench.load, vendor, bench.upstream_port, reqs, c, s.duration)
            d = _best(s.repeat, partial(_measured, bench, None, run_direct))
            run_proxied = partial(bench.load, vendor, kb.port, reqs, c, s.duration)
            p = _best(s.repeat, partial(_measured, bench, kb, run_proxied))
            ratio = p["rps"] / d["rps"] if d["rps"] else 0.0
            row = {"vendor": vendor, "connections": c, "direct": d, "proxied": p}
            rows.append({**row, "ratio": round(ratio, 3)})
            print(
                f"  {vendor:10} c={c:<3} direct {d['rps']:9.0f}/s  proxied {p['rps']:8.0f}/s"
                f"  ratio {ratio:5.2f}  proxy CPU {p['proxy_cpu_us_per_request']:7.0f} µs/req",
                flush=True,
            )
    return rows


def _peak(rows: list[dict[str, Any]], vendor: str, side: str) -> dict[str, Any]:
    mine = [r for r in rows if r["vendor"] == vendor]
    return max(mine, key=lambda r: r[side]["rps"])


def replay_on(bench: Bench, kb: ProxyServer, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same requests/s measurement with the replay cache on (every request unique), at
    the concurrency where replay-off peaked."""
    s, out = bench.settings, []
    for vendor in VENDORS:
        best = _peak(rows, vendor, "proxied")
        c = best["connections"]
        n = int(best["proxied"]["rps"] * max(1.0, round(s.duration)) * 1.5) + 2000
        reqs = bench.fresh(vendor, min(n, 300_000))
        p = _measured(
            bench, kb, partial(bench.load, f"{vendor}-unique", kb.port, reqs, c, s.duration)
        )
        direct = best["direct"]["rps"]
        ratio = p["rps"] / direct if direct else 0.0
        row = {"vendor": vendor, "connections": c, "proxied": p, "direct_rps": direct}
        out.append({**row, "ratio": round(ratio, 3), "signed_requests": len(reqs)})
        print(
            f"  {vendor:10} c={c:<3} replay on: proxied {p['rps']:8.0f}/s  ratio {ratio:5.2f}"
            f"  proxy CPU {p['proxy_cpu_us_per_request']:7.0f} µs/req  non-2xx {p['non_2xx']}",
            flush=True,
        )
    return out


def latency(
    bench: Bench, kb: ProxyServer, rows: list[dict[str, Any]], replay: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Open-loop runs at a fixed rate, direct and proxied: the added latency is the difference
    of their percentiles.  The rate is a share of the lower of the replay-off peak and the
    replay-on rate just measured on this server (a neighbour's load can lower the ceiling
    between the two; a rate above it would measure a queue, not the proxy)."""
    s, out = bench.settings, []
    for vendor in VENDORS:
        ceiling = _peak(rows, vendor, "proxied")["proxied"]["rps"]
        on = [r["proxied"]["rps"] for r in replay if r["vendor"] == vendor]
        rate = max(10.0, round(min([ceiling, *on]) * s.latency_share))
        reqs = bench.fresh(vendor, int(rate * s.duration) + 50)
        warm, rest = reqs[:50], reqs[50:]
        _open(kb.port, warm, 50, 1.0)
        d = _open(bench.upstream_port, rest, rate, s.duration)
        p = _measured(bench, kb, partial(_open, kb.port, rest, rate, s.duration))
        added = {q: round(p["latency_ms"][q] - d.latency_ms[q], 3) for q in ("p50", "p90", "p99")}
        row = {"vendor": vendor, "rate": rate, "direct": d.as_dict(), "proxied": p}
        out.append({**row, "added_ms": added})
        print(
            f"  {vendor:10} {rate:6.0f}/s open loop: added p50 {added['p50']:6.2f} ms"
            f"  p99 {added['p99']:6.2f} ms  (others busy: {p['foreign_cores']:.2f} cores)",
            flush=True,
        )
    return out


def _workers(kb: ProxyServer) -> list[int]:
    return kb.workers or [kb.pid]


@contextlib.contextmanager
def _relay(bench: Bench) -> Iterator[tuple[int, int]]:
    """The bare byte relay (``bench.relay``) to the upstream: (port, pid)."""

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.relay", str(port), str(bench.upstream_port)]

    ready = ready_when_open("the bare relay")
    with serve_on_free_port(command, bench.workdir / "relay", ready) as (proc, port):
        yield port, proc.pid


def large(bench: Bench, kb: ProxyServer) -> dict[str, Any]:
    """A streamed upload and download of ``transfer_mib`` MiB: direct, proxied (the workers'
    RSS sampled meanwhile) and through the bare byte relay, the ceiling for any Python relay."""
    s, a, up = bench.settings, bench.accounts, bench.upstream_port
    blocks = [os.urandom(MIB)]
    size = s.transfer_mib * MIB
    out: dict[str, Any] = {"bytes": size}
    with _relay(bench) as (rport, rpid):
        head = signing.s3_upload(a, blocks, s.transfer_mib)
        direct = upload(up, with_host(head, up), repeated(blocks, s.transfer_mib))
        with Meter(kb.pids, [bench.upstream_pid]) as meter, RssSampler(_workers(kb)) as rss:
            proxied = upload(kb.port, with_host(head, kb.port), repeated(blocks, s.transfer_mib))
        with Meter([rpid], [bench.upstream_pid]) as rmeter:
            relayed = upload(rport, with_host(head, rport), repeated(blocks, s.transfer_mib))
        out["upload"] = _transfer_row(direct, proxied, rss, meter)
        out["upload"].update(_relay_row(direct, proxied, relayed, rmeter))
        head = signing.s3_download(a, size)
        direct = download(up, with_host(head, up))
        with Meter(kb.pids, [bench.upstream_pid]) as meter, RssSampler(_workers(kb)) as rss:
            proxied = download(kb.port, with_host(head, kb.port))
        with Meter([rpid], [bench.upstream_pid]) as rmeter:
            relayed = download(rport, with_host(head, rport))
        out["download"] = _transfer_row(direct, proxied, rss, meter)
        out["download"].update(_relay_row(direct, proxied, relayed, rmeter))
    for kind in ("upload", "download"):
        row = out[kind]
        d, p, r = row["direct"], row["proxied"], row["relay"]
        print(
            f"  {kind:8} {size / MIB:6.0f} MiB: direct {d['mb_per_s']:7.0f} MB/s"
            f"  proxied {p['mb_per_s']:7.0f} MB/s (status {p['status']})"
            f"  ratio {row['ratio']:4.2f}  proxy CPU {p['proxy_cpu_s_per_gib']} s/GiB"
            f"  peak worker RSS {row['rss']['peak_worker_mb']} MB",
            flush=True,
        )
        print(
            f"  {'':8} {'':10} bare relay {r['mb_per_s']:7.0f} MB/s (status {r['status']})"
            f"  relay/direct {row['relay_ratio']:4.2f}"
            f"  proxied/relay {row['proxied_vs_relay']:4.2f}"
            f"  relay CPU {r['relay_cpu_s_per_gib']} s/GiB",
            flush=True,
        )
    return out


def _transfer_row(direct: Any, proxied: Any, rss: RssSampler, meter: Meter) -> dict[str, Any]:
    """Throughputs and their ratio; the proxy's CPU seconds per GiB moved (a figure that a
    busy neighbour disturbs less than MB/s); the workers' memory."""
    ratio = proxied.mb_per_s / direct.mb_per_s if direct.mb_per_s else 0.0
    p = proxied.as_dict()
    gib = proxied.nbytes / (1 << 30)
    p["proxy_cpu_s_per_gib"] = round(meter.proxy_cpu_s / gib, 2) if gib else 0.0
    p["foreign_cores"] = round(meter.foreign_cores, 2)
    row = {"direct": direct.as_dict(), "proxied": p}
    return {**row, "ratio": round(ratio, 3), "rss": rss.summary()}


def _relay_row(direct: Any, proxied: Any, relayed: Any, meter: Meter) -> dict[str, Any]:
    """The bare relay's run, its ratio to direct, and the proxy's ratio to it."""
    r = relayed.as_dict()
    gib = relayed.nbytes / (1 << 30)
    r["relay_cpu_s_per_gib"] = round(meter.proxy_cpu_s / gib, 2) if gib else 0.0
    r["foreign_cores"] = round(meter.foreign_cores, 2)
    to_direct = relayed.mb_per_s / direct.mb_per_s if direct.mb_per_s else 0.0
    proxied_vs = proxied.mb_per_s / relayed.mb_per_s if relayed.mb_per_s else 0.0
    return {
        "relay": r,
        "relay_ratio": round(to_direct, 3),
        "proxied_vs_relay": round(proxied_vs, 3),
    }


def posts(bench: Bench, kb: ProxyServer) -> dict[str, Any]:
    """``posts`` concurrent ``post_mb`` MB POSTs: Volcengine with ``x-content-sha256`` kept
    (the body streams, its hash checked on the way) and AWS form POSTs signed without a
    payload-hash header (the body must be held whole to verify the signature).  The upstream
    answers them after half a second, so all of them are inside the proxy at once."""
    s, out = bench.settings, {}
    pad = s.post_mb * 1_000_000
    for kind in ("streamed", "buffered"):
        if kind == "streamed":
            reqs = bench.fresh("volcengine", s.posts, pad=pad, path="/slow")
        else:
            start, bench.nonce = bench.nonce, bench.nonce + s.posts
            reqs = signing.aws_post(bench.accounts, s.posts, start, pad=pad, path="/slow")
        row = concurrent_posts(kb.port, [with_host(r, kb.port) for r in reqs], _workers(kb))
        out[kind] = {"vendor": "volcengine" if kind == "streamed" else "aws", **row}
        print(
            f"  {s.posts} x {s.post_mb} MB POSTs ({kind}): statuses {sorted(set(row['statuses']))}"
            f"  RSS growth, all workers {row['growth_all_workers_mb']} MB"
            f" (1 s later: {row['after_all_workers_mb']} MB in all)",
            flush=True,
        )
    return out


def quiet_log(bench: Bench, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's peak runs again with ``Log.Level: warn`` (no access line per request): what
    the access log costs."""
    s, out = bench.settings, []
    a, up = bench.accounts, bench.upstream_port
    with keybroker_serve(bench.workdir, up, a, replay=False, level="warn") as kb:
        for vendor in VENDORS:
            c = _peak(rows, vendor, "proxied")["connections"]
            reqs = bench.fresh(vendor, min(bench.settings.pool, 2000))
            bench.load(f"{vendor}-warn", kb.port, reqs, 8, 1.0)
            p = _measured(
                bench, kb, partial(bench.load, f"{vendor}-warn", kb.port, reqs, c, s.duration)
            )
            out.append({"vendor": vendor, "connections": c, "proxied": p})
            print(
                f"  {vendor:10} c={c:<3} Log.Level warn: {p['rps']:8.0f}/s"
                f"  proxy CPU {p['proxy_cpu_us_per_request']:7.0f} µs/req",
                flush=True,
            )
    return out


FLOOR_LAYERS = {"aiohttp": "aiohttp floor", "keybroker": "keybroker HTTP floor"}


def floor(bench: Bench, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same load through the cheapest pass-through proxies (one process each): on aiohttp
    (the naive proxy) and on keybroker's own HTTP layer (what that layer costs without the
    routing, signing and logging).  Both run per vendor one after the other, so a busy
    neighbour disturbs them alike.  A row per vendor and layer (``layer``)."""
    s, out = bench.settings, []

    def command(layer: str) -> Callable[[int], list[str]]:
        def make(port: int) -> list[str]:
            up = str(bench.upstream_port)
            return [sys.executable, "-m", "bench.floor_proxy", "--layer", layer, str(port), up]

        return make

    with contextlib.ExitStack() as stack:
        servers = {}
        for layer in FLOOR_LAYERS:
            ready = ready_when_open(f"the {layer} floor proxy")
            log = bench.workdir / f"floor-{layer}"
            proc, port = stack.enter_context(serve_on_free_port(command(layer), log, ready))
            servers[layer] = ProxyServer(port, proc.pid, [])
        for vendor in VENDORS:
            c = _peak(rows, vendor, "proxied")["connections"]
            reqs = bench.fresh(vendor, min(s.pool, 2000))
            for layer, server in servers.items():
                name = f"{vendor}-floor-{layer}"
                bench.load(name, server.port, reqs, 8, 1.0)
                run = partial(bench.load, name, server.port, reqs, c, s.duration)
                p = _measured(bench, server, run)
                out.append({"vendor": vendor, "layer": layer, "connections": c, "proxied": p})
                print(
                    f"  {vendor:10} c={c:<3} {FLOOR_LAYERS[layer] + ':':21} {p['rps']:8.0f}/s"
                    f" (one process)  CPU {p['proxy_cpu_us_per_request']:7.0f} µs/req",
                    flush=True,
                )
    return out


def profile(bench: Bench, kb: ProxyServer, reqs: list[bytes]) -> dict[str, Any] | None:
    """py-spy on one worker during an extra proxied AWS run (when py-spy is installed)."""
    from bench.profiling import profile_worker

    s = bench.settings
    c = s.concurrencies[len(s.concurrencies) // 2]
    out = s.artifacts.with_name(s.artifacts.name + "-profile.folded") if s.artifacts else None
    return profile_worker(
        bench.workdir, _workers(kb)[0], lambda: bench.load("aws", kb.port, reqs, c, s.duration), out
    )


# ------------------------------------------------------------------ the run
