"""Throughput runs with wrk: a Lua script cycles through pre-signed raw requests.

Each wrk thread walks its own stride of the list (thread ``k`` sends ``k, k+T, k+2T, ...``),
so no request is sent twice until the list is exhausted; the script's ``done`` prints one JSON
line that :func:`run_wrk` parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench.loadgen import LoadResult

__all__ = ["LUA", "have_wrk", "run_wrk", "write_requests"]

LUA = r"""
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local reqs, n, idx, stride = {}, 0, 0, 1
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  stride = tonumber(args[2])
  local start = 1
  while true do
    local stop = string.find(data, "\0", start, true)
    if not stop then break end
    n = n + 1
    reqs[n] = string.sub(data, start, stop - 1)
    start = stop + 1
  end
  idx = tid
end

function request()
  local r = reqs[(idx % n) + 1]
  idx = idx + stride
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"errors":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def write_requests(path: Path, requests: list[bytes]) -> Path:
    """One file of NUL-separated raw requests (NUL never occurs in our requests)."""
    if any(b"\0" in r for r in requests):
        raise ValueError("a request contains a NUL byte")
    path.write_bytes(b"\0".join(requests) + b"\0")
    return path


def run_wrk(
    workdir: Path, port: int, requests_file: Path, connections: int, duration: float
) -> LoadResult:
    """wrk with 2 threads (1 when ``connections`` is 1) for ``duration`` s."""
    script = workdir / "cycle.lua"
    if not script.exists():
        script.write_text(LUA)
    threads = min(2, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
        "--",
        str(requests_file),
        str(threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    latency = {q: round(data[q] / 1000, 3) for q in ("p50", "p90", "p99", "p99.9", "mean")}
    return LoadResult(
        "wrk",
        connections,
        round(data["duration_us"] / 1e6, 3),
        data["requests"],
        data["non_2xx"],
        data["errors"],
        latency,
    )
