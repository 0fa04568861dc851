"""The whole benchmark in one process lifetime: a local upstream, ``keybroker serve`` (once with
the replay cache off for the throughput sweep, once with it on, as deployed), load, large
bodies, memory, KMS.  Every server is on 127.0.0.1 and stopped by PID at the end."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import signing
from bench.kms_rate import kms_rates
from bench.loadgen import LoadResult, closed_loop, open_loop, run_async
from bench.meter import Meter
from bench.procs import RssSampler, check_alive, port_open, serve_on_free_port, wait_until
from bench.proxy_server import ProxyServer, keybroker_serve
from bench.signing import Accounts, with_host
from bench.transfer import concurrent_posts, download, repeated, upload
from bench.wrk import have_wrk, run_wrk, write_requests

__all__ = ["Settings", "run"]

VENDORS = ("aws", "volcengine")
METHOD = {
    "requests": "key-proxy wire contract (X-Mcdn-* headers), signed with the vendor SDKs",
    "throughput": "closed loop (wrk, Lua cycling pre-signed requests), replay cache off",
    "replay_on": "the same at the peak concurrency, every request unique, replay cache on",
    "latency": "open loop (Python, fixed rate = share of peak), latency from the scheduled time",
    "proxy_cpu": "utime+stime of the supervisor and workers (/proc) over the run / requests",
    "foreign_cores": "machine CPU (/proc/stat) not used by the proxy, upstream or load generator",
    "rss": "VmRSS of each worker sampled every 10 ms, and VmHWM after clear_refs",
}
MIB = 1 << 20


@dataclass
class Settings:
    """What to run; ``quick()`` is the ~30 s variant."""

    duration: float = 5.0
    concurrencies: tuple[int, ...] = (8, 32, 64)
    pool: int = 2000  # pre-signed requests cycled by the replay-off runs
    latency_share: float = 0.25  # open-loop rate, as a share of the peak proxied rate
    transfer_mib: int = 1024
    posts: int = 8
    post_mb: int = 5
    kms_seconds: float = 2.0
    kms_script: bool = True  # also run bench/kms_cache.py (when it exists) and keep its output
    generator: str = "wrk"  # or "python"
    profile: bool = False
    repeat: int = 1  # throughput runs per point; the best is kept (noisy neighbours)
    log_level: str = "info"  # the proxy's Log.Level (info writes one access line per request)
    artifacts: Path | None = None  # stem for extra files (the profile's collapsed stacks)

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            duration=1.0,
            concurrencies=(8, 32),
            pool=500,
            transfer_mib=64,
            kms_seconds=0.3,
            kms_script=False,
        )


@dataclass
class Bench:
    """State shared by the phases of one run."""

    settings: Settings
    workdir: Path
    accounts: Accounts
    upstream_port: int
    upstream_pid: int
    nonce: int = 1_000_000
    files: dict[tuple[str, int], Path] = field(default_factory=dict)

    def fresh(self, vendor: str, n: int, **kw: Any) -> list[bytes]:
        """``n`` requests never sent before (the replay cache would refuse a repeat)."""
        start, self.nonce = self.nonce, self.nonce + n
        if vendor == "aws":
            return signing.aws_get(self.accounts, n, start)
        return signing.volc_post(self.accounts, n, start, **kw)

    def load(
        self, name: str, port: int, requests: list[bytes], c: int, seconds: float
    ) -> LoadResult:
        """A closed-loop run: wrk when installed (and chosen), else the Python generator."""
        targeted = [with_host(r, port) for r in requests]
        if self.settings.generator == "wrk":
            key = (name, port)
            if key not in self.files:
                self.files[key] = write_requests(self.workdir / f"{name}-{port}.req", targeted)
            return run_wrk(self.workdir, port, self.files[key], c, seconds)
        return run_async(lambda: closed_loop(port, targeted, c, seconds))


# ------------------------------------------------------------------ phases


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


def large(bench: Bench, kb: ProxyServer) -> dict[str, Any]:
    """A streamed upload and download of ``transfer_mib`` MiB, direct and proxied, with the
    workers' RSS sampled during the proxied one."""
    s, a, up = bench.settings, bench.accounts, bench.upstream_port
    blocks = [os.urandom(MIB)]
    size = s.transfer_mib * MIB
    out: dict[str, Any] = {"bytes": size}
    head = signing.s3_upload(a, blocks, s.transfer_mib)
    direct = upload(up, with_host(head, up), repeated(blocks, s.transfer_mib))
    with Meter(kb.pids, [bench.upstream_pid]) as meter, RssSampler(_workers(kb)) as rss:
        proxied = upload(kb.port, with_host(head, kb.port), repeated(blocks, s.transfer_mib))
    out["upload"] = _transfer_row(direct, proxied, rss, meter)
    head = signing.s3_download(a, size)
    direct = download(up, with_host(head, up))
    with Meter(kb.pids, [bench.upstream_pid]) as meter, RssSampler(_workers(kb)) as rss:
        proxied = download(kb.port, with_host(head, kb.port))
    out["download"] = _transfer_row(direct, proxied, rss, meter)
    for kind in ("upload", "download"):
        row = out[kind]
        d, p = row["direct"], row["proxied"]
        print(
            f"  {kind:8} {size / MIB:6.0f} MiB: direct {d['mb_per_s']:7.0f} MB/s"
            f"  proxied {p['mb_per_s']:7.0f} MB/s (status {p['status']})"
            f"  ratio {row['ratio']:4.2f}  proxy CPU {p['proxy_cpu_s_per_gib']} s/GiB"
            f"  peak worker RSS {row['rss']['peak_worker_mb']} MB",
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


def floor(bench: Bench, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same load through the cheapest aiohttp pass-through proxy (one process): the part
    of the per-request cost that aiohttp itself sets."""
    s, out = bench.settings, []

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.floor_proxy", str(port), str(bench.upstream_port)]

    ready = _ready("the floor proxy")
    with serve_on_free_port(command, bench.workdir / "floor", ready) as (proc, port):
        server = ProxyServer(port, proc.pid, [])
        for vendor in VENDORS:
            c = _peak(rows, vendor, "proxied")["connections"]
            reqs = bench.fresh(vendor, min(s.pool, 2000))
            bench.load(f"{vendor}-floor", port, reqs, 8, 1.0)
            run = partial(bench.load, f"{vendor}-floor", port, reqs, c, s.duration)
            p = _measured(bench, server, run)
            out.append({"vendor": vendor, "connections": c, "proxied": p})
            print(
                f"  {vendor:10} c={c:<3} aiohttp floor: {p['rps']:8.0f}/s (one process)"
                f"  CPU {p['proxy_cpu_us_per_request']:7.0f} µs/req",
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


def _ready(what: str) -> Callable[[subprocess.Popen[bytes], int, Path], None]:
    def ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        wait_until(lambda: check_alive(proc, log) and port_open(port), what)

    return ready


@contextlib.contextmanager
def _upstream(workdir: Path) -> Iterator[tuple[int, int]]:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.upstream", str(port)]

    with serve_on_free_port(command, workdir / "upstream", _ready("the upstream")) as (proc, port):
        yield port, proc.pid


def _commit() -> str | None:
    """The checkout measured (with ``+dirty`` when it has changes), if it is a git one."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def meta(settings: Settings) -> dict[str, Any]:
    from keybroker import __version__

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "keybroker": __version__,
        "commit": _commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: v for k, v in settings.__dict__.items() if k != "artifacts"},
        "method": METHOD,
    }


def run(settings: Settings) -> dict[str, Any]:
    """Run every phase; the results as a JSON-ready dict (targets added by the caller)."""
    if settings.generator == "wrk" and not have_wrk():
        print("wrk is not installed (apt-get install wrk): using the Python generator", flush=True)
        settings.generator = "python"
    results: dict[str, Any] = {"meta": meta(settings)}
    with tempfile.TemporaryDirectory(prefix="keybroker-bench-") as tmp:
        workdir = Path(tmp)
        accounts = Accounts()
        with _upstream(workdir) as (up_port, up_pid):
            bench = Bench(settings, workdir, accounts, up_port, up_pid)
            pools = {
                "aws": signing.aws_get(accounts, settings.pool),
                "volcengine": signing.volc_post(accounts, settings.pool),
            }
            print(
                "throughput, replay cache off (a pool of pre-signed requests cycled):", flush=True
            )
            level = settings.log_level
            with keybroker_serve(workdir, up_port, accounts, replay=False, level=level) as kb:
                results["throughput"] = sweep(bench, kb, pools)
                if settings.profile:
                    results["profile"] = profile(bench, kb, pools["aws"])
            if level.lower() in ("debug", "info"):
                print("the same with Log.Level warn (no access log line):", flush=True)
                results["log_warn"] = quiet_log(bench, results["throughput"])
            print("the floor: a bare aiohttp pass-through proxy, same load:", flush=True)
            results["floor"] = floor(bench, results["throughput"])
            print(
                "replay cache on (memory, shared by the workers), every request unique:", flush=True
            )
            with keybroker_serve(workdir, up_port, accounts, replay=True, level=level) as kb:
                results["replay_on"] = replay_on(bench, kb, results["throughput"])
                results["latency"] = latency(bench, kb, results["throughput"], results["replay_on"])
                results["large"] = large(bench, kb)
                results["posts"] = posts(bench, kb)
    print("KMS:", flush=True)
    results["kms"] = kms_rates(settings.kms_seconds, run_script=settings.kms_script)
    results["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return results
