"""Micro benchmark: microseconds the signer spends on one proxied request.

    python -m bench.signer_cost [--n 2000] [--rounds 5]

Each "request" goes through the calls the proxy makes, in its order: ``signer.parse`` on the
request as routed, ``signer.verify`` with the proxy credential, then ``signer.resign`` of the
upstream copy with the real credential.  The requests are signed by the vendors' own SDKs
(botocore for SigV4, ``volcenginesdkcore`` for Volcengine), each with a query of its own so that
no cache keyed by the query hides the cost; every round signs a fresh batch.

Beside each scheme, "hmac only" is the bare work the scheme cannot avoid for one verify and
one re-sign: SHA-256 of the canonical request and HMAC-SHA256 of the string to sign, twice
(signing keys are cached in both).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict
from volcenginesdkcore.signv4 import SignerV4

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest

__all__ = ["Case", "cases", "main", "measure"]

STS_HOST = "sts.amazonaws.com"
S3_HOST = "bench-bucket.s3.us-east-1.amazonaws.com"
VOLC_HOST = "open.volcengineapi.com"


def _cred(prefix: str) -> Credential:
    return Credential(prefix + secrets.token_hex(8).upper(), Secret(secrets.token_urlsafe(30)))


@dataclass(frozen=True)
class Case:
    """One scheme: how to sign request ``i``, and which vendor verifies it."""

    name: str
    vendor: str
    make: Callable[[Credential, int], tuple[SigningRequest, bytes | None]]
    creq_len: int  # typical canonical-request length, for the "hmac only" baseline


def _botocore(req: AWSRequest) -> CIMultiDict[str]:
    return CIMultiDict((k, str(v)) for k, v in req.headers.items() if k.lower() != "host")


def _sts_get(cred: Credential, i: int) -> tuple[SigningRequest, bytes | None]:
    query = f"Action=GetCallerIdentity&Version=2011-06-15&Nonce={i}"
    req = AWSRequest(method="GET", url=f"https://{STS_HOST}/?{query}")
    boto = Credentials(cred.access_key, cred.secret_key.reveal())
    SigV4Auth(boto, "sts", "us-east-1").add_auth(req)
    return SigningRequest("GET", STS_HOST, "/", query, _botocore(req)), b""


def _s3_put(cred: Credential, i: int) -> tuple[SigningRequest, bytes | None]:
    path = f"/reports/2026/object-{i}.json"
    query = f"x-id=PutObject&n={i}"
    req = AWSRequest(method="PUT", url=f"https://{S3_HOST}{path}?{query}")
    req.headers["Content-Type"] = "application/json"
    req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(str(i).encode()).hexdigest()
    boto = Credentials(cred.access_key, cred.secret_key.reveal())
    SigV4Auth(boto, "s3", "us-east-1").add_auth(req)
    return SigningRequest("PUT", S3_HOST, path, query, _botocore(req)), None


def _s3_presigned(cred: Credential, i: int) -> tuple[SigningRequest, bytes | None]:
    path = f"/reports/2026/object-{i}.json"
    req = AWSRequest(method="GET", url=f"https://{S3_HOST}{path}?versionId=v{i}")
    boto = Credentials(cred.access_key, cred.secret_key.reveal())
    S3SigV4QueryAuth(boto, "s3", "us-east-1", expires=3600).add_auth(req)
    query = req.url.partition("?")[2]
    return SigningRequest("GET", S3_HOST, path, query, _botocore(req)), None


def _volc_post(cred: Credential, i: int) -> tuple[SigningRequest, bytes | None]:
    params = [("Action", "ListUsers"), ("Version", "2018-01-01"), ("Nonce", str(i))]
    body = f'{{"Limit":1,"Offset":{i}}}'
    headers = {"Content-Type": "application/json", "Host": VOLC_HOST}
    ak, sk = cred.access_key, cred.secret_key.reveal()
    SignerV4.sign("/", "POST", headers, body, None, params, ak, sk, "cn-beijing", "iam")
    headers.pop("Host")
    query = "&".join(f"{k}={v}" for k, v in params)
    return SigningRequest("POST", VOLC_HOST, "/", query, CIMultiDict(headers)), body.encode()


def cases() -> list[Case]:
    return [
        Case("aws sts GET (header)", "aws", _sts_get, 230),
        Case("aws s3 PUT (header, sha256)", "aws", _s3_put, 330),
        Case("aws s3 GET (presigned)", "aws", _s3_presigned, 420),
        Case("volcengine POST (header)", "volcengine", _volc_post, 300),
    ]


@dataclass
class Timing:
    parse: float = 0.0
    verify: float = 0.0
    resign: float = 0.0

    @property
    def total(self) -> float:
        return self.parse + self.verify + self.resign


def _batch(
    case: Case, proxy: Credential, n: int, start: int
) -> Iterator[tuple[SigningRequest, SigningRequest, bytes | None]]:
    for i in range(start, start + n):
        signed, body = case.make(proxy, i)
        upstream = signed.copy()  # upstream_request(): the proxy's copy, outside the signer
        yield signed, upstream, body


def measure(case: Case, n: int, start: int) -> Timing:
    """Mean µs per request of each phase over ``n`` freshly signed requests."""
    signer = signers.get(case.vendor)
    proxy, real = _cred("AKIDPROXY"), _cred("AKIAREAL")
    batch = list(_batch(case, proxy, n, start))
    clock = time.perf_counter_ns
    timing = Timing()
    for signed, upstream, body in batch:
        t0 = clock()
        auth = signer.parse(signed)
        t1 = clock()
        signer.verify(signed, auth, proxy, body)
        t2 = clock()
        signer.resign(upstream, auth, real, body, datetime.now(UTC))
        t3 = clock()
        timing.parse += t1 - t0
        timing.verify += t2 - t1
        timing.resign += t3 - t2
    scale = 1000.0 * n
    return Timing(timing.parse / scale, timing.verify / scale, timing.resign / scale)


def hmac_only(creq_len: int, n: int) -> float:
    """Mean µs of two (SHA-256 of a canonical request + HMAC of the string to sign)."""
    key = secrets.token_bytes(32)
    scope = "20260101/us-east-1/sts/aws4_request"
    creqs = [(f"{i:08d}" + "x" * (creq_len - 8)).encode() for i in range(n)]
    started = time.perf_counter_ns()
    for creq in creqs:
        for _ in range(2):
            digest = hashlib.sha256(creq).hexdigest()
            to_sign = f"AWS4-HMAC-SHA256\n20260101T000000Z\n{scope}\n{digest}"
            hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (time.perf_counter_ns() - started) / 1000.0 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per scheme and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept")
    args = parser.parse_args()
    print(f"µs per request (best of {args.rounds} rounds of {args.n} distinct requests)")
    print(f"{'scheme':30} {'parse':>7} {'verify':>7} {'resign':>7} {'total':>7} {'hmac':>6} ratio")
    for k, case in enumerate(cases()):
        measure(case, 200, 10**9)  # warm up: imports, key caches
        best = None
        for r in range(args.rounds):
            t = measure(case, args.n, (k * args.rounds + r) * args.n)
            best = t if best is None or t.total < best.total else best
        assert best is not None
        base = min(hmac_only(case.creq_len, args.n) for _ in range(args.rounds))
        print(
            f"{case.name:30} {best.parse:7.1f} {best.verify:7.1f} {best.resign:7.1f} "
            f"{best.total:7.1f} {base:6.1f} {best.total / base:5.1f}x"
        )


if __name__ == "__main__":
    main()
