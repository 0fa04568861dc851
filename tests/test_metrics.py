"""Metrics: the text exposition parsed strictly, counts after real requests through a running
proxy, histogram buckets, label escaping, the series cap, threads, and several processes
(real proxies, a forked child, a worker that exits) summed into one answer."""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker import __version__
from keybroker.context import RequestContext
from keybroker.metrics import instruments as metrics
from keybroker.metrics.families import CONTENT_TYPE
from keybroker.metrics.instruments import DURATION_BUCKETS, ProxyMetrics
from keybroker.metrics.registry import ENV_DIR, Registry
from keybroker.settings import Config, Endpoint, Policy, SecurityConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.servers import free_port, http_ok, running, wait_until

ROOT = Path(__file__).resolve().parents[1]
STS = "https://sts.us-east-1.amazonaws.com/"
BODY = b"Action=GetCallerIdentity&Version=2011-06-15"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
AK, SK = "AKIDPROXYMETRICS0001", secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIAREALMETRICS00001", secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
_NONCE = itertools.count()


# ---------------------------------------------------------------------- a strict parser

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? ([^ ]+)")
_LABEL_NAME = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
_NUMBER = re.compile(r"[-+]?(Inf|NaN|[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

Labels = frozenset[tuple[str, str]]


@dataclass
class Family:
    kind: str
    doc: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def get(self, sample: str, **labels: str) -> float:
        return self.samples.get((sample, frozenset(labels.items())), 0.0)


def parse(text: str) -> dict[str, Family]:
    """Text format 0.0.4 as we emit it: HELP then TYPE, then that family's samples; every
    line ends with a newline; label values use only the three escapes; no duplicates."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: str | None = None
    doc = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert name not in families, f"family {name} twice"
            current = None
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert doc is not None and kind in _SUFFIXES, line
            families[name] = Family(kind, _unescape_help(doc))
            current, doc = name, None
        else:
            assert current is not None, f"sample outside a family: {line!r}"
            _add_sample(families[current], current, line)
    return families


def _add_sample(family: Family, name: str, line: str) -> None:
    m = _SAMPLE.fullmatch(line)
    assert m, f"not a sample line: {line!r}"
    sample, labels, value = m.group(1), _parse_labels(m.group(2) or "{}"), m.group(3)
    assert sample in {name + s for s in _SUFFIXES[family.kind]}, line
    assert _NUMBER.fullmatch(value), f"not a number: {value!r}"
    key = (sample, labels)
    assert key not in family.samples, f"duplicate sample {line!r}"
    family.samples[key] = float(value)


def _parse_labels(text: str) -> Labels:
    assert text[0] == "{" and text[-1] == "}"
    out: dict[str, str] = {}
    i = 1
    while text[i] != "}":
        m = _LABEL_NAME.match(text, i)
        assert m, f"bad label at {text[i:]!r}"
        i, value = m.end(), []
        while text[i] != '"':
            if text[i] == "\\":
                value.append(_ESCAPES[text[i + 1]])  # KeyError: an escape the format lacks
                i += 2
            else:
                value.append(text[i])
                i += 1
        assert m.group(1) not in out
        out[m.group(1)] = "".join(value)
        i += 1
        if text[i] == ",":
            i += 1
            assert text[i] != "}"
    assert i == len(text) - 1, f"trailing text after labels: {text!r}"
    return frozenset(out.items())


def _unescape_help(doc: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], doc)


def check_histograms(families: dict[str, Family]) -> int:
    """Each histogram series: cumulative buckets never decrease, ``+Inf`` equals ``_count``.
    Returns the number of series checked."""
    checked = 0
    for name, fam in families.items():
        if fam.kind != "histogram":
            continue
        series: dict[Labels, list[tuple[float, float]]] = {}
        for (sample, labels), value in fam.samples.items():
            if sample == name + "_bucket":
                le = dict(labels)["le"]
                rest = frozenset(kv for kv in labels if kv[0] != "le")
                series.setdefault(rest, []).append((float(le), value))
        for labels, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{name} buckets decrease: {buckets}"
            assert buckets[-1][0] == float("inf")
            assert counts[-1] == fam.samples[(name + "_count", labels)]
            checked += 1
    return checked


# ---------------------------------------------------------------------- the exposition


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry()
    yield reg
    reg.close()


def test_exposition_parses_with_every_type(registry: Registry) -> None:
    hits = registry.counter("t_hits_total", "Hits.\nSecond line with a \\.", ("path", "code"))
    temp = registry.gauge("t_temperature", "A gauge.")
    hist = registry.histogram("t_seconds", "A histogram.", ("op",), (0.1, 1.0))
    hits.inc(("/a", 200))
    hits.inc(("/a", 200), 2.5)
    hits.inc(("/b", 404))
    temp.set((), -3.25)
    temp.inc()
    for v in (0.05, 0.1, 0.5, 7.0):
        hist.observe(("get",), v)
    fams = parse(registry.render())
    assert fams["t_hits_total"].kind == "counter"
    assert fams["t_hits_total"].doc == "Hits.\nSecond line with a \\."
    assert fams["t_hits_total"].get("t_hits_total", path="/a", code="200") == 3.5
    assert fams["t_hits_total"].get("t_hits_total", path="/b", code="404") == 1
    assert fams["t_temperature"].get("t_temperature") == -2.25
    h = fams["t_seconds"]
    assert [h.get("t_seconds_bucket", op="get", le=le) for le in ("0.1", "1.0", "+Inf")] == [
        2,
        3,
        4,
    ]
    assert h.get("t_seconds_sum", op="get") == pytest.approx(7.65)
    assert h.get("t_seconds_count", op="get") == 4
    assert check_histograms(fams) == 1


def test_the_same_labels_as_int_and_str_are_one_series(registry: Registry) -> None:
    c = registry.counter("t_status_total", "By status.", ("status",))
    c.inc((200,))
    c.inc(("200",))
    fams = parse(registry.render())  # the parser refuses a duplicate sample
    assert fams["t_status_total"].get("t_status_total", status="200") == 2


def test_unlabelled_counter_shows_zero_before_any_event(registry: Registry) -> None:
    registry.counter("t_nothing_total", "Nothing yet.")
    assert parse(registry.render())["t_nothing_total"].get("t_nothing_total") == 0


def test_histogram_buckets_are_cumulative_and_bounds_inclusive(registry: Registry) -> None:
    hist = registry.histogram("t_latency_seconds", "Latency.", ("vendor",), DURATION_BUCKETS)
    values = [0.0, 0.0005, 0.0006, 0.001, 0.3, 29.9, 30.0, 30.1, 1e9, -1.0]
    for v in values:
        hist.observe(("aws",), v)
    fam = parse(registry.render())["t_latency_seconds"]
    assert check_histograms({"t_latency_seconds": fam}) == 1
    for bound in DURATION_BUCKETS:
        expected = sum(1 for v in values if v <= bound)
        assert fam.get("t_latency_seconds_bucket", vendor="aws", le=repr(bound)) == expected
    assert fam.get("t_latency_seconds_count", vendor="aws") == len(values)
    assert DURATION_BUCKETS[0] == 0.0005 and DURATION_BUCKETS[-1] == 30.0


def test_label_values_are_escaped(registry: Registry) -> None:
    c = registry.counter("t_escaped_total", "Escapes.", ("v",))
    nasty = 'quote" backslash\\ newline\n brace} comma, end\\'
    c.inc((nasty,))
    text = registry.render()
    assert r'v="quote\" backslash\\ newline\n brace} comma, end\\"' in text
    assert parse(text)["t_escaped_total"].get("t_escaped_total", v=nasty) == 1


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=6)), min_size=1, max_size=8))
def test_any_label_values_round_trip(pairs: list[tuple[str, str]]) -> None:
    reg = Registry()
    c = reg.counter("t_any_total", "Any labels.", ("a", "b"))
    expected: dict[tuple[str, str], float] = {}
    for a, b in pairs:
        c.inc((a, b))
        key = (_sendable(a), _sendable(b))
        expected[key] = expected.get(key, 0) + 1
    text = reg.render()
    text.encode("utf-8")  # always sendable
    fam = parse(text)["t_any_total"]
    got = {(dict(k[1])["a"], dict(k[1])["b"]): v for k, v in fam.samples.items()}
    assert got == expected


def _sendable(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def test_series_cap_folds_extra_label_sets_into_other() -> None:
    reg = Registry(max_series=3)
    c = reg.counter("t_capped_total", "Capped.", ("account", "status"))
    h = reg.histogram("t_capped_seconds", "Capped.", ("account",), (1.0,))
    for i in range(7):
        c.inc((f"acct-{i}", 200))
        h.observe((f"acct-{i}",), 0.5)
    c.inc(("acct-1", 200))  # an existing series keeps counting after the cap is reached
    fams = parse(reg.render())
    samples = fams["t_capped_total"].samples
    assert len(samples) == 4
    assert fams["t_capped_total"].get("t_capped_total", account="acct-1", status="200") == 2
    assert fams["t_capped_total"].get("t_capped_total", account="other", status="other") == 4
    assert fams["t_capped_seconds"].get("t_capped_seconds_count", account="other") == 4
    assert sum(samples.values()) == 8


def test_misuse_is_a_value_error_with_a_precise_message(registry: Registry) -> None:
    c = registry.counter("t_ok_total", "Fine.", ("a",))
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: registry.counter("bad name", "x"), "invalid metric name 'bad name'"),
        (lambda: registry.counter("t_x", "x", ("__reserved",)), "invalid label name"),
        (lambda: registry.counter("t_y", "x", ("a", "a")), "duplicate label names"),
        (lambda: registry.counter("t_ok_total", "again"), "already registered"),
        (lambda: registry.histogram("t_h", "x", ("le",), (1,)), "label named 'le'"),
        (lambda: registry.histogram("t_h", "x", (), (2, 1)), "increasing order"),
        (lambda: registry.gauge("t_g", "x", (), "avg"), "'sum' or 'max'"),
        (lambda: c.inc(("x", "y")), "t_ok_total takes 1 label values, got 2"),
        (lambda: c.inc(("x",), -1), "must not be negative"),
        (lambda: Registry(max_series=0), "max_series must be at least 1"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            fn()


def test_threads_lose_no_increments(registry: Registry) -> None:
    c = registry.counter("t_threads_total", "From threads.", ("k",))
    h = registry.histogram("t_threads_seconds", "From threads.", (), (0.5,))
    n, per = 6, 5000

    def work(i: int) -> None:
        for j in range(per):
            c.inc(("shared",))
            c.inc((f"t{i}",))
            h.observe((), j % 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fams = parse(registry.render())
    assert fams["t_threads_total"].get("t_threads_total", k="shared") == n * per
    assert fams["t_threads_total"].get("t_threads_total", k="t3") == per
    assert fams["t_threads_seconds"].get("t_threads_seconds_bucket", le="0.5") == n * per / 2
    assert fams["t_threads_seconds"].get("t_threads_seconds_count") == n * per


# ---------------------------------------------------------------------- keybroker's metrics


def _ctx(**fields: object) -> RequestContext:
    ctx = RequestContext("r-1", "native", "GET", "127.0.0.1")
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def test_observe_counts_status_duration_and_error_codes() -> None:
    m = ProxyMetrics(Registry())
    m.observe(_ctx(account="a", vendor="aws", status=403, error_code="Proxy.Forbidden"))
    m.observe(_ctx(account="a", vendor="aws", status=200, started=time.perf_counter() - 0.2))
    m.observe(_ctx(account="a", vendor="aws", status=502, error_code="Proxy.NetworkErr"))
    m.observe(_ctx(account="a", vendor="aws", status=409, error_code="Proxy.Replay"))
    m.observe(_ctx(mode="keyproxy", status=404, error_code="Proxy.CloudAccountNotFound"))
    m.kms_op("aws", "wrap", "ok")
    m.config_reload("rejected")
    fams = parse(m.render())
    req = fams["keybroker_requests_total"]
    ok = {"account": "a", "vendor": "aws", "mode": "native", "status": "200"}
    assert req.get("keybroker_requests_total", **ok) == 1
    lost = {"account": "unknown", "vendor": "unknown", "mode": "keyproxy", "status": "404"}
    assert req.get("keybroker_requests_total", **lost) == 1
    assert fams["keybroker_policy_denials_total"].samples == {
        ("keybroker_policy_denials_total", frozenset({("account", "a")})): 1
    }
    up = fams["keybroker_upstream_errors_total"]
    assert up.get("keybroker_upstream_errors_total", vendor="aws", kind="unreachable") == 1
    replay = fams["keybroker_replay_rejections_total"]
    assert replay.get("keybroker_replay_rejections_total") == 1
    dur = fams["keybroker_request_duration_seconds"]
    labels = {"vendor": "aws", "mode": "native"}
    assert dur.get("keybroker_request_duration_seconds_count", **labels) == 4
    assert dur.get("keybroker_request_duration_seconds_bucket", le="0.1", **labels) == 3
    assert dur.get("keybroker_request_duration_seconds_bucket", le="0.25", **labels) == 4
    assert dur.get("keybroker_request_duration_seconds_sum", **labels) >= 0.2
    kms = fams["keybroker_kms_operations_total"]
    op = {"backend": "aws", "operation": "wrap", "outcome": "ok"}
    assert kms.get("keybroker_kms_operations_total", **op) == 1
    reloads = fams["keybroker_config_reloads_total"]
    assert reloads.get("keybroker_config_reloads_total", result="rejected") == 1
    info = fams["keybroker_build_info"]
    assert info.get("keybroker_build_info", version=__version__) == 1
    assert check_histograms(fams) == 2


def test_module_functions_count_on_the_default_registry() -> None:
    def value() -> tuple[float, float]:
        fams = parse(metrics.DEFAULT.render())
        kms = fams["keybroker_kms_operations_total"].get(
            "keybroker_kms_operations_total", backend="gcp", operation="unwrap", outcome="error"
        )
        rel = fams["keybroker_config_reloads_total"]
        return kms, rel.get("keybroker_config_reloads_total", result="ok")

    before = value()
    metrics.kms_op("gcp", "unwrap", "error")
    metrics.KMSOperations().operation("gcp", "unwrap", "error")  # the KMS observer
    metrics.config_reload("ok")
    metrics.config_reload("ok")
    after = value()
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)


# ---------------------------------------------------------------------- through the proxy


def _scrape(url: str) -> dict[str, Family]:
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE
    return parse(r.text)


def _requests_total(fams: dict[str, Family]) -> dict[tuple[str, ...], float]:
    fam = fams["keybroker_requests_total"]
    out = {}
    for (_, labels), v in fam.samples.items():
        d = dict(labels)
        out[(d["account"], d["vendor"], d["mode"], d["status"])] = v
    return out


def _delta(after: dict[tuple[str, ...], float], before: dict[tuple[str, ...], float]) -> dict:  # type: ignore[type-arg]
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _endpoints(upstream: str) -> list[Endpoint]:
    ok = aws_endpoint("m-ok", AK, SK, REAL_AK, REAL_SK, upstream)
    denied = aws_endpoint("m-denied", AK + "D", SK, REAL_AK, REAL_SK, upstream)
    denied.policy = Policy(services=["s3"])
    down = aws_endpoint("m-down", AK + "X", SK, REAL_AK, REAL_SK, f"http://127.0.0.1:{free_port()}")
    return [ok, denied, down]


def _post(url: str, account: str, ak: str, sk: str = SK) -> int:
    body = BODY + b"&Nonce=%d" % next(_NONCE)  # a request signed twice alike is a replay
    signed = sign_aws("POST", STS, ak=ak, sk=sk, service="sts", body=body, headers=FORM)
    return send(url, "POST", STS, signed, account=account, body=body).status


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recorder]:
    with recording_upstream() as rec:
        yield rec


def test_counts_after_real_requests_through_the_proxy(upstream: Recorder) -> None:
    with proxy_running(Config(endpoints=_endpoints(upstream.url))) as (url, _):
        before = _scrape(url)
        assert [_post(url, "m-ok", AK) for _ in range(3)] == [200] * 3
        assert _post(url, "m-ok", AK, sk="wrong") == 401
        assert _post(url, "m-denied", AK + "D") == 403
        assert _post(url, "m-down", AK + "X") == 502
        assert _post(url, "nobody", AK) == 404
        assert requests.get(url + "/healthz", timeout=10).status_code == 200  # not counted
        after = _scrape(url)
    assert _delta(_requests_total(after), _requests_total(before)) == {
        ("m-ok", "aws", "keyproxy", "200"): 3,
        ("m-ok", "aws", "keyproxy", "401"): 1,
        ("m-denied", "aws", "keyproxy", "403"): 1,
        ("m-down", "aws", "keyproxy", "502"): 1,
        ("unknown", "unknown", "keyproxy", "404"): 1,
    }

    def get(fams: dict[str, Family], name: str, sample: str, **labels: str) -> float:
        return fams[name].get(sample, **labels)

    for name, sample, labels, expected in [
        ("keybroker_upstream_errors_total", "", {"vendor": "aws", "kind": "refused"}, 1),
        ("keybroker_policy_denials_total", "", {"account": "m-denied"}, 1),
        ("keybroker_request_duration_seconds", "_count", {"vendor": "aws", "mode": "keyproxy"}, 6),
    ]:
        sample = name + sample
        assert get(after, name, sample, **labels) - get(before, name, sample, **labels) == expected
    # the scrape itself is the one request in flight
    assert get(after, "keybroker_inflight_requests", "keybroker_inflight_requests") == 1
    assert check_histograms(after) >= 1


def test_metrics_route_only_for_a_plain_get(upstream: Recorder) -> None:
    with proxy_running(Config(endpoints=_endpoints(upstream.url))) as (url, _):
        assert requests.post(url + "/metrics", timeout=10).headers["Content-Type"] != CONTENT_TYPE
        r = requests.get(url + "/metrics?x=1", timeout=10)
        assert r.headers["Content-Type"] != CONTENT_TYPE


def test_metrics_only_for_the_configured_client_networks(upstream: Recorder) -> None:
    """``/metrics`` names the accounts: loopback only by default, else the configured networks;
    the health endpoints answer anyone ``AllowedClientCIDRs`` admits (the others are closed
    when they connect)."""
    outside = ["192.0.2.0/24"]  # TEST-NET-1: never this test's address
    cases = [
        (SecurityConfig(), 200),  # the default: loopback
        (SecurityConfig(metrics_client_cidrs=outside), 403),
        (SecurityConfig(metrics_client_cidrs=[*outside, "127.0.0.1/32"]), 200),
        (SecurityConfig(metrics_client_cidrs=[]), 200),  # anyone
    ]
    for security, status in cases:
        config = Config(endpoints=_endpoints(upstream.url), security=security)
        with proxy_running(config) as (url, _):
            r = requests.get(url + "/metrics", timeout=10)
            assert r.status_code == status, (security, r.text)
            if status == 403:
                assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.Forbidden"
                assert "keybroker_requests_total" not in r.text
    closed = SecurityConfig(
        allowed_client_cidrs=[*outside, "127.0.0.1/32"], metrics_client_cidrs=outside
    )
    with proxy_running(Config(endpoints=_endpoints(upstream.url), security=closed)) as (url, _):
        for path in ("/ping", "/healthz", "/readyz"):
            assert requests.get(url + path, timeout=10).status_code == 200, path
        assert requests.get(url + "/metrics", timeout=10).status_code == 403
    shut = SecurityConfig(allowed_client_cidrs=outside)
    with proxy_running(Config(endpoints=_endpoints(upstream.url), security=shut)) as (url, _):
        for path in ("/ping", "/metrics"):  # the allow-list holds at accept, for every path
            with pytest.raises(requests.ConnectionError):
                requests.get(url + path, timeout=10)


# ---------------------------------------------------------------------- several processes

WORKER = """
import os, sys
from keybroker.settings import Config, Endpoint, HttpConfig
from keybroker.credentials import Credential
from keybroker.proxy.app import Proxy
from keybroker.secret import Secret
port, upstream = sys.argv[1], sys.argv[2]
env = os.environ
ep = Endpoint("m-ok", "aws", Credential(env["T_AK"], Secret(env["T_SK"])),
              Credential(env["T_REAL_AK"], Secret(env["T_REAL_SK"])), upstream=upstream)
Proxy(Config(http=HttpConfig(address="127.0.0.1:" + port), endpoints=[ep])).run()
"""


def _worker_env(directory: Path) -> dict[str, str]:
    return {
        ENV_DIR: str(directory),
        "T_AK": AK,
        "T_SK": SK,
        "T_REAL_AK": REAL_AK,
        "T_REAL_SK": REAL_SK,
        "PYTHONPATH": str(ROOT / "src"),
    }


def _ok_count(url: str) -> float:
    counts = _requests_total(_scrape(url))
    return counts.get(("m-ok", "aws", "keyproxy", "200"), 0)


@pytest.mark.slow
def test_two_worker_processes_report_one_sum(upstream: Recorder, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    env = _worker_env(tmp_path)
    cmds = [[sys.executable, "-c", WORKER, str(p), upstream.url] for p in ports]
    with running(cmds[0], http_ok(urls[0] + "/healthz"), env=env, cwd=str(ROOT)) as first:
        with running(cmds[1], http_ok(urls[1] + "/healthz"), env=env, cwd=str(ROOT)) as second:
            for url, n in ((urls[0], 2), (urls[1], 3)):
                assert [_post(url, "m-ok", AK) for _ in range(n)] == [200] * n
            # each worker answers for both, once the other's snapshot is written (<= 1 s)
            for url in urls:
                wait_until(lambda url=url: _ok_count(url) == 5, 10, "summed metrics")  # type: ignore[misc]
            assert {f.name for f in tmp_path.iterdir()} == {
                f"w-{first.pid}.json",
                f"w-{second.pid}.json",
            }
            second.send_signal(signal.SIGTERM)
            assert second.wait(15) == 0
        # the stopped worker's counts stay in the sum (totals never go backwards)
        assert _ok_count(urls[0]) == 5
        assert first.poll() is None


GAUGE_WORKER = """
import sys
from keybroker.metrics.instruments import ProxyMetrics
from keybroker.metrics.registry import Registry
m = ProxyMetrics(Registry(flush_interval=0.05))
m.inflight.inc(amount=7)
m.kms_op("local", "wrap", "ok")
m.registry.flush()
print("flushed", flush=True)
sys.stdin.read()
"""


def test_a_dead_workers_gauges_are_dropped_its_counters_kept(tmp_path: Path) -> None:
    mine = ProxyMetrics(Registry(directory=tmp_path))
    mine.inflight.inc()

    def read() -> tuple[float, float]:
        fams = parse(mine.render())
        op = {"backend": "local", "operation": "wrap", "outcome": "ok"}
        kms = fams["keybroker_kms_operations_total"].get("keybroker_kms_operations_total", **op)
        return fams["keybroker_inflight_requests"].get("keybroker_inflight_requests"), kms

    env = {**os.environ, **_worker_env(tmp_path)}
    cmd = [sys.executable, "-c", GAUGE_WORKER]
    pipe = subprocess.PIPE
    with subprocess.Popen(cmd, stdin=pipe, stdout=pipe, env=env, cwd=str(ROOT)) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"flushed\n"
        assert read() == (8, 1)  # alive: its in-flight 7 counts
        proc.stdin.close()
        assert proc.wait(10) == 0
    assert read() == (1, 1)
    mine.registry.close()


def test_a_forked_child_starts_from_zero(tmp_path: Path) -> None:
    reg = Registry(directory=tmp_path)
    c = reg.counter("t_fork_total", "Forked.")
    g = reg.gauge("t_fork_gauge", "Kept across fork.")
    c.inc(amount=5)
    g.set((), 2)
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            snap = reg.snapshot()
            ok = snap["t_fork_total"] == [] and snap["t_fork_gauge"] == [((), 2)]
            c.inc()
            reg.flush()
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fams = parse(reg.render())
    assert fams["t_fork_total"].get("t_fork_total") == 6  # 5 here + 1 from the child
    assert fams["t_fork_gauge"].get("t_fork_gauge") == 2  # the exited child's gauge is dropped
    reg.close()


def test_a_reused_pid_keeps_the_dead_process_counts(tmp_path: Path) -> None:
    stale = tmp_path / f"w-{os.getpid()}.json"  # as if a dead worker had our pid
    stale.write_text(json.dumps({"pid": os.getpid(), "metrics": {"t_reuse_total": [[[], 4]]}}))
    reg = Registry(directory=tmp_path)
    c = reg.counter("t_reuse_total", "Reused pid.")
    c.inc()
    reg.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith(f"r-{os.getpid()}-")
    assert parse(reg.render())["t_reuse_total"].get("t_reuse_total") == 5
    reg.close()


def test_unreadable_snapshots_are_skipped(tmp_path: Path) -> None:
    for name, text in {
        "w-1.json": "{not json",
        "w-2.json": '{"pid": 2, "metrics": {"t_skip_total": [[["x"], 1]]}}',  # labels wrong
        "w-3.json": '{"pid": 3, "metrics": {"t_skip_total": [[[], "1"]]}}',  # not a number
        "w-4.json": '{"pid": 4, "metrics": {"t_skip_seconds": [[[], [1, 2]]]}}',  # short row
        "r-5-1.json": '{"pid": 5, "metrics": {"t_skip_total": [[[], 2]], "t_other": 1}}',
        "notes.txt": "ignored",
    }.items():
        (tmp_path / name).write_text(text)
    reg = Registry(directory=tmp_path)
    c = reg.counter("t_skip_total", "Skip.")
    reg.histogram("t_skip_seconds", "Skip.", (), (1.0,))
    c.inc()
    fams = parse(reg.render())
    assert fams["t_skip_total"].get("t_skip_total") == 3  # own 1 + the one good file's 2
    assert fams["t_skip_seconds"].samples == {}
    reg.close()


def test_the_aggregate_is_capped_too(tmp_path: Path) -> None:
    for pid, label in ((11, "a"), (12, "b"), (13, "c")):
        snap = {"pid": pid, "metrics": {"t_agg_total": [[[label], 1]]}}
        (tmp_path / f"r-{pid}-1.json").write_text(json.dumps(snap))
    reg = Registry(directory=tmp_path, max_series=2)
    reg.counter("t_agg_total", "Aggregate.", ("k",)).inc(("mine",))
    fam = parse(reg.render())["t_agg_total"]
    assert len(fam.samples) == 3 and fam.get("t_agg_total", k="other") == 2
    reg.close()


SERVE_CONFIG = """Http:
  Address: "127.0.0.1:{port}"
  Workers: 2
Log:
  Output: {log}
Endpoints:
  - CloudAccountName: "m-ok"
    Vendor: aws
    Upstream: "{upstream}"
    Credentials:
      Proxy: {{AccessKey: "{ak}", SecretKey: "{sk}"}}
      Real: {{AccessKey: "{real_ak}", SecretKey: "{real_sk}"}}
"""


@pytest.mark.slow
def test_keybroker_serve_with_two_workers_answers_the_sum(
    upstream: Recorder, tmp_path: Path
) -> None:
    port = free_port()
    cfg = tmp_path / "config.yml"
    log_dir = logscan.log_dir(tmp_path / "log")
    cfg.write_text(
        SERVE_CONFIG.format(
            port=port,
            log=log_dir,
            upstream=upstream.url,
            ak=AK,
            sk=SK,
            real_ak=REAL_AK,
            real_sk=REAL_SK,
        )
    )
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)]
    env = {"TMPDIR": str(tmp_path)}  # the supervisor's metrics directory lands here
    ready = http_ok(url + "/healthz")
    with running(cmd, ready, env=env, cwd=str(ROOT), what="keybroker serve"):
        # fresh connections each time: the kernel spreads them over the workers
        assert [_post(url, "m-ok", AK) for _ in range(8)] == [200] * 8

        def flushed() -> bool:  # both workers' snapshots hold all their counts
            files = list(tmp_path.glob("keybroker-*/metrics/w-*.json"))
            return len(files) == 2 and sum(map(_ok_in_file, files)) == 8

        wait_until(flushed, 10, "worker snapshots")
        # whichever worker answers, it answers for both
        assert [_ok_count(url) for _ in range(10)] == [8] * 10


def _ok_in_file(path: Path) -> float:
    series = json.loads(path.read_text())["metrics"]["keybroker_requests_total"]
    return sum(v for labels, v in series if labels == ["m-ok", "aws", "keyproxy", 200])
