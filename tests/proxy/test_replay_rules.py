"""Replay rules through a real proxy: the key is what the signature means (every spelling of
one captured request is the same request), ``Security.ReplayProtection`` decides which requests
are single use, and a request that never reached the upstream can be retried."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from volcenginesdkcore.signv4 import SignerV4

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint, SecurityConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.servers import free_port

AK, SK = "AKIDPROXYRULES000001", secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIAREALRULES0000001", secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
OBJECT = "https://bkt.s3.us-east-1.amazonaws.com/obj.txt?a=1&b=2"
ASSUME = "https://sts.us-east-1.amazonaws.com/?Action=AssumeRole&RoleArn=r&RoleSessionName=s"
WHOAMI = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"


def _cfg(upstream: str, protection: str = "mutating") -> Config:
    ep = aws_endpoint("acct", AK, SK, REAL_AK, REAL_SK, upstream)
    return Config(security=SecurityConfig(replay_protection=protection), endpoints=[ep])


@pytest.fixture
def upstream() -> Iterator[Recorder]:
    with recording_upstream() as up:
        yield up


def _code(r: requests.Response) -> str:
    """The error code of a key-proxy JSON answer or of an S3-shaped XML one (native mode)."""
    if r.text.startswith("<"):
        return r.text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    return str(r.json()["ResponseMetadata"]["Error"]["Code"])


# ---------------------------------------------------------------------- spellings


class _UnsignedPayload(S3SigV4Auth):
    """What an SDK sends over TLS: ``x-amz-content-sha256: UNSIGNED-PAYLOAD``."""

    def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
        return False


def _unsigned_put() -> dict[str, str]:
    req = AWSRequest(method="PUT", url=OBJECT, data=b"original")
    _UnsignedPayload(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    assert req.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    return {k: v for k, v in req.headers.items()}


def _respell(auth: str, how: int) -> str:
    """Other spellings of one SigV4 Authorization value that AWS (and the parser) accept."""
    alg, rest = auth.split(" ", 1)
    parts = [p.strip() for p in rest.split(",")]
    name, _, sig = parts[2].partition("=")
    if how == 1:
        parts[2] = f"{name}={sig.upper()}"
    if how == 2:
        return f"{alg} {','.join(parts)}"
    if how == 3:
        return f"{alg} {', '.join(reversed(parts))}"
    if how == 4:
        return alg + " " + ",\t".join(parts)
    if how == 5:
        return f"{alg} {', '.join(parts)},"
    if how == 6:
        return f"{alg} {' '.join(parts)}"
    return f"{alg} {', '.join(parts)}"


def _respell_query(url: str, how: int) -> str:
    """The same query, spelled another way: reordered, ``&``-padded, percent-encoded."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    if how == 1:
        return f"{base}?{urlencode(list(reversed(pairs)))}"
    if how == 2:
        return f"{base}?&{query}&&"
    if how == 3:
        encoded = "&".join(f"{''.join(f'%{ord(c):02X}' for c in k)}={v}" for k, v in pairs)
        return f"{base}?{encoded}"
    return url


def test_unsigned_payload_put_replayed_with_8_bodies_passes_once(upstream: Recorder) -> None:
    """One captured UNSIGNED-PAYLOAD S3 PUT, replayed with 8 bodies and as many spellings of
    its Authorization and query: the first reaches the upstream, every replay is refused."""
    captured = _unsigned_put()
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        results = []
        for i in range(8):
            signed = {**captured, "Authorization": _respell(captured["Authorization"], i % 7)}
            origin = _respell_query(OBJECT, i % 4)
            results.append(send(url, "PUT", origin, signed, account="acct", body=b"body-%d" % i))
    assert results[0].status == 200, results[0].body
    assert [r.status for r in results[1:]] == [401] * 7, [r.body for r in results]
    assert {r.json()["ResponseMetadata"]["Error"]["Code"] for r in results[1:]} == {"Proxy.Replay"}
    assert [s.body for s in upstream.seen] == [b"body-0"]


def _s3(proxy_url: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=proxy_url,
        region_name="us-east-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _respell_presigned(url: str, how: int) -> str:
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    if how == 1:
        pairs = list(reversed(pairs))
    if how == 2:
        pairs = [(k, v.upper() if k == "X-Amz-Signature" else v) for k, v in pairs]
    if how == 3:
        return f"{base}?&&{query}&"
    if how == 4:
        return base + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='~')}" for k, v in pairs)
    if how == 5:
        spelled = [
            (k, "".join(f"%{ord(c):02X}" if c.isalnum() else c for c in v)) for k, v in pairs
        ]
        return base + "?" + "&".join(f"{k}={v}" for k, v in spelled)
    return base + "?" + urlencode(pairs)


def test_seven_day_presigned_put_is_single_use(upstream: Recorder) -> None:
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        presigned = _s3(url).generate_presigned_url(  # type: ignore[attr-defined]
            "put_object", Params={"Bucket": "bkt", "Key": "k.txt"}, ExpiresIn=7 * 24 * 3600
        )
        statuses = [
            requests.put(_respell_presigned(presigned, i), data=b"v%d" % i, timeout=10)
            for i in range(6)
        ]
    assert statuses[0].status_code == 200, statuses[0].text
    assert [r.status_code for r in statuses[1:]] == [401] * 5, [r.text for r in statuses]
    assert {_code(r) for r in statuses[1:]} == {"Proxy.Replay"}
    assert len(upstream.seen) == 1


def test_presigned_get_and_head_are_reusable_by_default(upstream: Recorder) -> None:
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        s3 = _s3(url)
        params = {"Bucket": "bkt", "Key": "k.txt"}
        get = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=600)  # type: ignore[attr-defined]
        head = s3.generate_presigned_url("head_object", Params=params, ExpiresIn=600)  # type: ignore[attr-defined]
        got = [requests.get(get, timeout=10).status_code for _ in range(2)]
        headed = [requests.head(head, timeout=10).status_code for _ in range(2)]
    assert (got, headed) == ([200, 200], [200, 200])
    assert [s.method for s in upstream.seen] == ["GET", "GET", "HEAD", "HEAD"]


def test_presigned_get_is_single_use_under_all(upstream: Recorder) -> None:
    with proxy_running(_cfg(upstream.url, "all"), replay=True) as (url, _):
        presigned = _s3(url).generate_presigned_url(  # type: ignore[attr-defined]
            "get_object", Params={"Bucket": "bkt", "Key": "k.txt"}, ExpiresIn=600
        )
        got = [requests.get(presigned, timeout=10) for _ in range(2)]
    assert [r.status_code for r in got] == [200, 401]
    assert _code(got[1]) == "Proxy.Replay"


# ---------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("protection", "reads", "writes"),
    [
        ("mutating", [200, 200], [200, 401]),
        ("all", [200, 401], [200, 401]),
        ("off", [200, 200], [200, 200]),
    ],
)
def test_replay_protection_decides_on_the_operation(
    upstream: Recorder, protection: str, reads: list[int], writes: list[int]
) -> None:
    with proxy_running(_cfg(upstream.url, protection), replay=True) as (url, _):
        read = sign_aws("GET", WHOAMI, ak=AK, sk=SK, service="sts")
        write = sign_aws("GET", ASSUME, ak=AK, sk=SK, service="sts")
        got_reads = [send(url, "GET", WHOAMI, read, account="acct").status for _ in range(2)]
        got_writes = [send(url, "GET", ASSUME, write, account="acct").status for _ in range(2)]
    assert (got_reads, got_writes) == (reads, writes)


def test_readme_boto3_snippet_twice_within_a_second(moto_auth: tuple[str, str, str]) -> None:
    """The README's snippet (list_buckets, native mode) run twice at once: both answered."""
    moto_url, real_ak, real_sk = moto_auth
    cfg = Config(endpoints=[aws_endpoint("readme", AK, SK, real_ak, real_sk, moto_url)])
    with proxy_running(cfg, replay=True) as (url, _):
        answers = []
        for _ in range(2):
            s3 = boto3.client(
                "s3",
                endpoint_url=url,
                region_name="eu-west-1",
                aws_access_key_id=AK,
                aws_secret_access_key=SK,
            )
            answers.append(s3.list_buckets()["Buckets"])
    assert answers[0] == answers[1]


def _volc_spellings(ak: str, sk: str) -> list[dict[str, str]]:
    """A Volcengine IAM DeleteUser signed by the SDK's signer for key-proxy mode, and two
    respellings of it (component order, separators, query order)."""
    host = "open.volcengineapi.com"
    query = [("Action", "DeleteUser"), ("UserName", "victim"), ("Version", "2018-01-01")]
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": host}
    SignerV4.sign("/", "POST", headers, "", None, query, ak, sk, "cn-beijing", "iam", None)
    headers.pop("Host")
    alg, rest = headers["Authorization"].split(" ", 1)
    parts = [p.strip() for p in rest.split(",")]
    spellings = [
        (headers["Authorization"], query),
        (alg + " " + ",\t".join(reversed(parts)), list(reversed(query))),
        (f"{alg} {' ,'.join(parts)}", [query[1], query[0], query[2]]),
    ]
    return [
        {
            **headers,
            "Authorization": auth,
            "X-Mcdn-Origin-Uri": f"https://{host}/?{urlencode(order)}",
            "X-Mcdn-Cloud-Account-Name": "volc",
            "X-Mcdn-Kept-Headers": "authorization,x-date,content-type,x-content-sha256",
        }
        for auth, order in spellings
    ]


def test_volcengine_delete_user_replayed_three_times_is_refused() -> None:
    from tests.signers.volc_upstream import volc_upstream

    real_ak, real_sk = "AKLTREALRULES" + secrets.token_hex(6), secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKLTPROXYRULES" + secrets.token_hex(6), secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    with volc_upstream(real_ak, real_sk) as up:
        ep = Endpoint(
            cloud_account_name="volc",
            vendor="volcengine",
            proxy=Credential(proxy_ak, Secret(proxy_sk)),
            real=Credential(real_ak, Secret(real_sk)),
            upstream=str(up),
        )
        with proxy_running(Config(endpoints=[ep]), replay=True) as (url, _):
            spelled = _volc_spellings(proxy_ak, proxy_sk)
            first = requests.post(url + "/x", headers=spelled[0], data=b"", timeout=10)
            replays = [
                requests.post(url + "/x", headers=spelled[i % 3], data=b"", timeout=10)
                for i in range(1, 4)
            ]
        hits = up.hits
    assert first.status_code == 200, first.text
    assert [r.status_code for r in replays] == [401, 401, 401], [r.text for r in replays]
    assert {_code(r) for r in replays} == {"Proxy.Replay"}
    assert hits == 1


# ---------------------------------------------------------------------- retries


def test_retry_after_a_refused_upstream_connection_succeeds() -> None:
    """The upstream is down: the answer is the real error (502 NetworkErr), and the client's
    identical retry is not a replay; once it reached the upstream, it is."""
    port = free_port()
    with proxy_running(_cfg(f"http://127.0.0.1:{port}"), replay=True) as (url, _):
        captured = sign_aws("GET", ASSUME, ak=AK, sk=SK, service="sts")
        down = [send(url, "GET", ASSUME, captured, account="acct") for _ in range(3)]
        with recording_upstream(port=port) as up:
            retried = send(url, "GET", ASSUME, captured, account="acct")
            replayed = send(url, "GET", ASSUME, captured, account="acct")
    assert [r.status for r in down] == [502, 502, 502]
    assert {r.json()["ResponseMetadata"]["Error"]["Code"] for r in down} == {"Proxy.NetworkErr"}
    assert retried.status == 200, retried.body
    assert replayed.status == 401 and replayed.json()["ResponseMetadata"]["Error"]["Code"] == (
        "Proxy.Replay"
    )
    assert len(up.seen) == 1


def test_boto3_retries_after_a_refused_connection_see_the_real_error() -> None:
    """boto3's own retries of a mutating call against a dead upstream: every attempt is a 502
    NetworkErr, never a Replay."""
    from botocore.exceptions import ClientError

    port = free_port()
    with proxy_running(_cfg(f"http://127.0.0.1:{port}"), replay=True) as (url, _):
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=AK,
            aws_secret_access_key=SK,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 3},
            ),
        )
        with pytest.raises(ClientError) as info:
            s3.delete_object(Bucket="bkt", Key="k")
    meta = info.value.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 502
    assert meta.get("RetryAttempts") == 2
    assert "Replay" not in str(info.value)


def test_boto3_retry_after_a_refused_connection_succeeds() -> None:
    """boto3's own retry of a DeleteObject whose first attempt met a refused upstream
    connection: the SDK's clock is held, so the retry is the identical signed request, and it
    is answered by the upstream (which comes up between the attempts) instead of Replay."""
    from contextlib import ExitStack
    from datetime import UTC, datetime
    from unittest import mock

    port = free_port()
    came_up: list[Recorder] = []
    stack = ExitStack()

    def bring_up(**_: object) -> None:  # botocore's needs-retry event
        if not came_up:
            came_up.append(stack.enter_context(recording_upstream(port=port, empty_status=204)))

    signed: list[str] = []
    fixed = datetime.now(UTC).replace(tzinfo=None)
    with stack, proxy_running(_cfg(f"http://127.0.0.1:{port}"), replay=True) as (url, _):
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=AK,
            aws_secret_access_key=SK,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 3},
            ),
        )
        s3.meta.events.register("needs-retry.s3.DeleteObject", bring_up)
        s3.meta.events.register(
            "before-send.s3.DeleteObject",
            lambda request, **_: signed.append(request.headers["Authorization"].decode()),
        )
        with mock.patch("botocore.auth.get_current_datetime", lambda: fixed):
            answer = s3.delete_object(Bucket="bkt", Key="k")
        seen = list(came_up[0].seen) if came_up else []
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(signed) == 2 and signed[0] == signed[1]  # the identical signed request
    assert [s.method for s in seen] == ["DELETE"]


def test_a_body_refused_before_its_first_byte_went_up_keeps_nothing(upstream: Recorder) -> None:
    """An S3 PUT whose body does not hash to its signed x-amz-content-sha256 is cut before
    any byte reaches the upstream: the client's retry with the right body goes through once."""
    url_s3 = "https://bkt.s3.us-east-1.amazonaws.com/put.txt"
    signed = sign_aws("PUT", url_s3, ak=AK, sk=SK, service="s3", body=b"right body")
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        corrupted = send(url, "PUT", url_s3, signed, account="acct", body=b"wrong body")
        retried = send(url, "PUT", url_s3, signed, account="acct", body=b"right body")
        replayed = send(url, "PUT", url_s3, signed, account="acct", body=b"right body")
    assert corrupted.status == 401, corrupted.body
    assert corrupted.json()["ResponseMetadata"]["Error"]["Code"] != "Proxy.Replay"
    assert (retried.status, replayed.status) == (200, 401)
    assert [s.body for s in upstream.seen] == [b"right body"]


@pytest.mark.slow
def test_a_503_over_the_concurrency_limit_keeps_nothing() -> None:
    """A request refused because the account is at MaxConcurrentRequests never reached the
    upstream: the client's identical retry, once a slot is free, goes through (once)."""
    import threading

    with recording_upstream(delay=1.5) as slow:
        cfg = _cfg(slow.url)
        cfg.endpoints[0].max_concurrent_requests = 1
        with proxy_running(cfg, replay=True) as (url, _):
            busy = sign_aws("GET", ASSUME + "&busy=1", ak=AK, sk=SK, service="sts")
            holder = threading.Thread(
                target=send, args=(url, "GET", ASSUME + "&busy=1", busy), kwargs={"account": "acct"}
            )
            holder.start()
            for _ in range(100):  # until the slow request holds the account's one slot
                if slow.seen:
                    break
                threading.Event().wait(0.02)
            captured = sign_aws("GET", ASSUME, ak=AK, sk=SK, service="sts")
            refused = send(url, "GET", ASSUME, captured, account="acct")
            holder.join()
            retried = send(url, "GET", ASSUME, captured, account="acct")
            replayed = send(url, "GET", ASSUME, captured, account="acct")
    assert refused.status == 503, refused.body
    assert (retried.status, replayed.status) == (200, 401)
    assert len(slow.seen) == 2


def test_a_policy_refusal_keeps_nothing(upstream: Recorder) -> None:
    """A request the policy refuses records no replay entry: allowed later (after a config
    reload widened the policy), it goes through once."""
    cfg = _cfg(upstream.url)
    cfg.endpoints[0].policy.deny_actions = ["sts:AssumeRole"]
    with proxy_running(cfg, replay=True) as (url, pt):
        captured = sign_aws("GET", ASSUME, ak=AK, sk=SK, service="sts")
        denied = send(url, "GET", ASSUME, captured, account="acct")
        wider = _cfg(upstream.url)
        wider.security.replay_cache = "memory"
        pt.call(lambda: pt.proxy.reload(wider))
        allowed = send(url, "GET", ASSUME, captured, account="acct")
        replayed = send(url, "GET", ASSUME, captured, account="acct")
    assert (denied.status, allowed.status, replayed.status) == (403, 200, 401)
    assert len(upstream.seen) == 1


def test_unparsed_urls_stay_distinct(upstream: Recorder) -> None:
    """Two different writes signed in the same second are two requests (their signatures
    differ), not a replay of one another."""
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        a = sign_aws("GET", ASSUME + "1", ak=AK, sk=SK, service="sts")
        b = sign_aws("GET", ASSUME + "2", ak=AK, sk=SK, service="sts")
        got = [
            send(url, "GET", ASSUME + n, s, account="acct").status for n, s in (("1", a), ("2", b))
        ]
    assert got == [200, 200]
