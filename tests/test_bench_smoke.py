"""``python -m bench --quick`` still runs end to end: a real upstream, ``keybroker serve`` with
its workers, load (wrk when installed, else the Python generator), large bodies, KMS.  Only the
JSON's shape and the sanity of what was measured are checked: figures depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs the benchmarks: outside scripts/test --fast

REPO = Path(__file__).resolve().parents[1]
VENDORS = {"aws", "volcengine"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--duration",
        "1",
        "--concurrency",
        "4",
        "--transfer-mib",
        "8",
        "--kms-seconds",
        "0.1",
        "--no-plots",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"stderr: {done.stderr[-3000:]}\nstdout: {done.stdout[-2000:]}"
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    data: dict[str, Any] = json.loads(files[0].read_text())
    data["_stdout"] = done.stdout
    return data


def _load_result(r: dict[str, Any]) -> None:
    assert r["requests"] > 0 and r["rps"] > 0
    assert r["non_2xx"] == 0 and r["errors"] == 0, r
    assert set(r["latency_ms"]) >= {"p50", "p90", "p99"}
    assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]


def test_throughput_rows(results: dict[str, Any]) -> None:
    rows = results["throughput"]
    assert {r["vendor"] for r in rows} == VENDORS
    for r in rows:
        assert r["connections"] == 4
        _load_result(r["direct"])
        _load_result(r["proxied"])
        assert r["proxied"]["proxy_cpu_us_per_request"] > 0
        assert r["ratio"] == pytest.approx(r["proxied"]["rps"] / r["direct"]["rps"], abs=0.001)


def test_replay_on_every_request_accepted(results: dict[str, Any]) -> None:
    rows = results["replay_on"]
    assert {r["vendor"] for r in rows} == VENDORS
    for r in rows:
        _load_result(r["proxied"])  # a repeat would be refused: non_2xx == 0 means all unique


def test_latency_and_reference_runs(results: dict[str, Any]) -> None:
    for r in results["latency"]:
        assert r["rate"] >= 10
        _load_result(r["direct"])
        _load_result(r["proxied"])
        assert set(r["added_ms"]) == {"p50", "p90", "p99"}
    for part in ("floor", "log_warn"):
        assert {r["vendor"] for r in results[part]} == VENDORS
        for r in results[part]:
            _load_result(r["proxied"])
            assert r["proxied"]["proxy_cpu_us_per_request"] > 0
    layers = {(r["vendor"], r["layer"]) for r in results["floor"]}
    assert layers == {(v, layer) for v in VENDORS for layer in ("aiohttp", "keybroker")}
    assert "keybroker HTTP floor" in results["_stdout"]


def test_large_bodies_and_posts(results: dict[str, Any]) -> None:
    large = results["large"]
    assert large["bytes"] == 8 << 20
    for kind in ("upload", "download"):
        row = large[kind]
        for side in ("direct", "proxied", "relay"):
            assert row[side]["status"] == 200
            assert row[side]["bytes"] == 8 << 20
        assert row["rss"]["peak_worker_mb"] > 0
        assert row["proxied"]["proxy_cpu_s_per_gib"] >= 0
        assert row["relay"]["relay_cpu_s_per_gib"] >= 0
        relay, proxied = row["relay"]["mb_per_s"], row["proxied"]["mb_per_s"]
        assert row["proxied_vs_relay"] == pytest.approx(proxied / relay, abs=0.001)
    assert "bare relay" in results["_stdout"]
    for kind in ("streamed", "buffered"):
        row = results["posts"][kind]
        assert row["statuses"] == [200] * 8
        assert row["peak_worker_mb"] >= row["baseline_mb"] > 0


def test_kms_and_targets(results: dict[str, Any]) -> None:
    kms = results["kms"]
    assert kms["cluster_deks_per_s"] > 0
    assert kms["external_uncached_deks_per_s"] > 0
    targets = results["targets"]
    assert len(targets) >= 16
    for t in targets:
        assert set(t) >= {"name", "measured", "limit", "unit", "ok"}
        assert t["measured"] is not None, t["name"]
        assert t["ok"] in (True, False)
    assert "target" in results["_stdout"] and "results:" in results["_stdout"]


def test_audit_cost_runs_every_mode() -> None:
    """``python -m bench.audit_cost``: each mode served every request it was sent."""
    cmd = [sys.executable, "-m", "bench.audit_cost", "--duration", "0.5", "--json"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert [r["mode"] for r in rows] == ["off", "none", "5ms", "always"]
    for r in rows:
        _load_result(r)


def test_printed_report_says_what_it_measured(results: dict[str, Any]) -> None:
    out = results["_stdout"]
    assert "8 MiB upload: peak worker RSS" in out and "1 GiB" not in out  # the size it moved
    kms = out.split("KMS get_dek rates:", 1)[1]
    assert "cluster_deks_per_s" in kms.split("target", 1)[0]  # the heading is not empty
    assert "MISS: it is not" in out  # the legend of the ok/MISS column
