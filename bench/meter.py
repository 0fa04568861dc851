"""CPU accounting around one measurement: the proxy's own CPU time, and how much CPU the rest
of the machine (anything not started by the benchmark) took meanwhile — a busy neighbour
makes every figure worse, and the report says so."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

from bench.procs import cpu_seconds, machine_busy_seconds

__all__ = ["Meter"]


def _own_seconds() -> float:
    """This process and its waited-for children (wrk runs to completion inside a run)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Meter:
    """``with Meter(proxy_pids, other_bench_pids) as m: ...`` then ``m.proxy_cpu_s``,
    ``m.foreign_cores`` (average cores busy with work that is not the benchmark's)."""

    proxy_pids: list[int]
    bench_pids: list[int] = field(default_factory=list)
    proxy_cpu_s: float = 0.0
    foreign_cores: float = 0.0
    elapsed_s: float = 0.0

    def __enter__(self) -> Meter:
        self._t0 = time.perf_counter()
        self._proxy0 = cpu_seconds(self.proxy_pids)
        self._bench0 = cpu_seconds(self.bench_pids) + _own_seconds()
        self._busy0 = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._t0
        self.proxy_cpu_s = cpu_seconds(self.proxy_pids) - self._proxy0
        bench = cpu_seconds(self.bench_pids) + _own_seconds() - self._bench0
        busy = machine_busy_seconds() - self._busy0
        foreign = max(0.0, busy - bench - self.proxy_cpu_s)
        self.foreign_cores = foreign / self.elapsed_s if self.elapsed_s else 0.0

    def us_per_request(self, requests: int) -> float:
        return self.proxy_cpu_s / requests * 1e6 if requests else 0.0
