"""What one benchmark run shares: the settings, the accounts and the pre-signed request
sources, the upstream, and the chosen load generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import signing
from bench.loadgen import LoadResult, closed_loop, run_async
from bench.signing import Accounts, with_host
from bench.wrk import run_wrk, write_requests

__all__ = ["METHOD", "MIB", "VENDORS", "Bench", "Settings"]

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
    """What to run; ``quick()`` is the short variant (about a minute)."""

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
