"""Micro benchmark: microseconds per call of the per-request pieces outside the signers.

    python -m bench.request_cost [--n 20000] [--rounds 5]

Measured in this process, best of ``--rounds``:

* the access line (:func:`keybroker.logs.setup.request_log_line`) with logging set up as
  ``keybroker serve`` sets it up (a ``Log`` directory at level info, the config's secrets
  registered for scrubbing), the file writes included;
* :func:`keybroker.proxy.destinations.parse_origin_uri` on a typical STS origin URI (a new ``Nonce``
  each call, as the proxy sees them: no cache of the standard library helps);
* :func:`keybroker.proxy.routing.kept_headers` on a typical ``X-Mcdn-Kept-Headers`` value;
* :meth:`keybroker.proxy.routing.Router.keyproxy` with the signer's ``parse`` replaced by a stub
  (and, for reference, in all), on a SigV4-signed GET as the platform sends it (a new
  ``Nonce`` each call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from keybroker import signers
from keybroker.config.loader import loads
from keybroker.logs.file import LOG_FILE_NAME
from keybroker.logs.format import REQUEST_ID
from keybroker.logs.redact import register_config_secrets
from keybroker.logs.setup import request_log_line, reset_logging, setup_logging
from keybroker.proxy import routing
from keybroker.proxy.destinations import parse_origin_uri
from keybroker.proxy.routing import Router, kept_headers
from keybroker.settings import Config, LogConfig

ORIGIN = "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&Nonce={}"
DISTINCT = 1024  # more origin URIs than urlsplit's cache holds (128)
KEPT = "authorization,x-amz-date"
CONFIG = """
Http:
  Address: ":3888"
Log:
  Output: "-"
  Level: info
Endpoints:
  - CloudAccountName: "aws-bench"
    Vendor: "aws"
    Credentials:
      Proxy: {AccessKey: "AKIDBENCHPROXY000001", SecretKey: "bench/Proxy+Secret+0000000000000001"}
      Real: {AccessKey: "AKIABENCHREAL0000001", SecretKey: "bench/Real+Secret+00000000000000001"}
  - CloudAccountName: "volc-bench"
    Vendor: "volcengine"
    Credentials:
      Proxy: {AccessKey: "AKLTBENCHPROXY000001", SecretKey: "bench/Volc+Proxy+Secret+000000001"}
      Real: {AccessKey: "AKLTBENCHREAL0000001", SecretKey: "bench/Volc+Real+Secret+0000000001"}
"""


class FakeRequest:
    """The request attributes routing may use, and nothing else."""

    def __init__(self, method: str, raw_path: str, headers: list[tuple[str, str]]) -> None:
        self.method = method
        self.raw_path = raw_path
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.secure = False
        self.remote = "127.0.0.1"
        self.content_length: int | None = None
        self.body_exists = False


def _signed_get(nonce: int) -> FakeRequest:
    """A GetCallerIdentity GET as the bench load sends it (signature made up: never verified)."""
    origin = ORIGIN.format(nonce)
    headers = [
        ("Host", "127.0.0.1:3888"),
        ("X-Amz-Date", "20250101T000000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDBENCHPROXY000001/20250101/us-east-1/sts/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0f" * 32,
        ),
        ("X-Mcdn-Origin-Uri", origin),
        ("X-Mcdn-Cloud-Account-Name", "aws-bench"),
        ("X-Mcdn-Kept-Headers", KEPT),
    ]
    return FakeRequest("GET", origin.removeprefix("https://sts.amazonaws.com"), headers)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (no body to read) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def per_call_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    for _ in range(min(n, 2000)):  # warm up caches
        fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / n)
    return best / 1000


def access_line_us(config: Config, n: int, rounds: int) -> tuple[float, int]:
    """µs per access line, and the bytes the file holds once logging is shut down."""
    register_config_secrets(config)
    with tempfile.TemporaryDirectory(prefix="keybroker-bench-") as tmp:
        setup_logging(LogConfig(output=tmp, level="info"))
        token = REQUEST_ID.set("5f0c1d2e3a4b")
        counter = iter(range(1 << 62))

        def line() -> None:
            request_log_line(
                request_id=f"5f0c1d2e{next(counter):08x}",
                method="GET",
                mode="keyproxy",
                status=200,
                account="aws-bench",
                vendor="aws",
                service="sts",
                action="GetCallerIdentity",
                upstream_host="https://sts.amazonaws.com",
                bytes_out=431,
                latency_ms=0.8734,
            )

        try:
            cost = per_call_us(line, n, rounds)
        finally:
            REQUEST_ID.reset(token)
            reset_logging()
        written = sum(p.stat().st_size for p in Path(tmp).glob(LOG_FILE_NAME + "*"))
    return cost, written


def keyproxy_us(config: Config, n: int, rounds: int) -> tuple[float, float]:
    """µs per Router.keyproxy call with the signer's parse stubbed out, and in all."""
    router = Router(config)
    requests = [_signed_get(i) for i in range(DISTINCT)]
    first = _run(router.keyproxy(requests[0]))  # type: ignore[arg-type]
    parsed = routing.parse_auth(signers.get("aws"), first.signed)
    pick = _cycle(DISTINCT)

    def call() -> object:
        return _run(router.keyproxy(requests[pick()]))  # type: ignore[arg-type]

    whole = per_call_us(call, n, rounds)
    real_parse = routing.parse_auth
    routing.parse_auth = lambda signer, req: parsed
    try:
        less_signer = per_call_us(call, n, rounds)
    finally:
        routing.parse_auth = real_parse
    return less_signer, whole


def _cycle(size: int) -> Callable[[], int]:
    """0, 1, ..., size - 1, 0, 1, ...: the index of the next of ``size`` prepared inputs."""
    state = [-1]

    def step() -> int:
        state[0] = (state[0] + 1) % size
        return state[0]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept")
    args = parser.parse_args()
    config = loads(CONFIG, "bench")
    line, written = access_line_us(config, args.n, args.rounds)
    origins = [ORIGIN.format(i) for i in range(DISTINCT)]
    pick = _cycle(DISTINCT)
    origin = per_call_us(lambda: parse_origin_uri(origins[pick()]), args.n, args.rounds)
    kept = per_call_us(lambda: kept_headers(KEPT), args.n, args.rounds)
    less_signer, whole = keyproxy_us(config, args.n, args.rounds)
    rows = [
        ("request_log_line (file write included)", line),
        ("parse_origin_uri", origin),
        ("kept_headers", kept),
        ("Router.keyproxy, signer.parse stubbed", less_signer),
        ("  (Router.keyproxy in all)", whole),
    ]
    for name, us in rows:
        print(f"{name:<42} {us:8.2f} µs")
    expected = args.rounds * args.n + min(args.n, 2000)
    print(f"log file after shutdown: {written} bytes for {expected} lines")


if __name__ == "__main__":
    main()
