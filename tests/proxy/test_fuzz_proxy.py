"""Fuzzing the whole proxy over real HTTP: for every registered signer, arbitrary headers,
queries, bodies and Authorization values get a 4xx (or the upstream's answer) — never a 5xx,
never a hang."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, recording_upstream

PREFIXES = [
    "AWS4-HMAC-SHA256 Credential=",
    "HMAC-SHA256 Credential=",
    "TC3-HMAC-SHA256 Credential=",
    "SDK-HMAC-SHA256 Access=",
    "bce-auth-v1/",
    "JDCLOUD2-HMAC-SHA256 Credential=",
    "JDCLOUD3-HMAC-SHA256 Credential=",
    "EG1-HMAC-SHA256 client_token=",
    "QBox ",
    "Qiniu ",
    "Basic ",
    "ACS3-HMAC-SHA256 Credential=",
    "",
]
SECRET = secrets.token_urlsafe(24)
REAL_SECRET = secrets.token_urlsafe(24)  # a proxy credential never shares the real secret
logscan.register(SECRET, REAL_SECRET)
STATS = {"requests": 0}


def _endpoint(vendor: str, upstream: str) -> Endpoint:
    fields = signers.get(vendor).credential_fields

    def cred(tag: str) -> Credential:
        secret = SECRET if tag == "P" else REAL_SECRET
        return Credential(
            access_key=f"AKID{tag}{vendor.upper()}0001",
            secret_key=Secret(secret),
            access_token=Secret(secret + "t") if "access_token" in fields else None,
            client_token=Secret(f"ct-{tag}-{vendor}") if "client_token" in fields else None,
            client_secret=Secret(secret + "c") if "client_secret" in fields else None,
        )

    return Endpoint(f"acct-{vendor}", vendor, cred("P"), cred("R"), upstream=upstream)


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[tuple[str, Recorder]]:
    with recording_upstream() as up:
        cfg = Config(endpoints=[_endpoint(v, up.url) for v in signers.known_vendors()])
        with proxy_running(cfg) as (url, _):
            yield url, up


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
names = st.sampled_from(
    [
        "X-Amz-Date",
        "X-Date",
        "X-Sdk-Date",
        "x-bce-date",
        "X-TC-Timestamp",
        "x-jdcloud-date",
        "x-acs-date",
        "Date",
        "Content-Type",
        "X-Amz-Content-Sha256",
        "X-Content-Sha256",
        "x-jdcloud-nonce",
        "X-Amz-Security-Token",
        "Expect",
        "Transfer-Encoding",
        "X-Foo",
    ]
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(PREFIXES),
    auth_rest=header_text,
    extra=st.dictionaries(names, header_text, max_size=5),
    query=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#"),
        max_size=200,
    ),
    body=st.binary(max_size=2000),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
    keyproxy=st.booleans(),
    vendor=st.sampled_from(sorted(signers.BUILTIN_VENDORS)),
)
def _never_5xx(
    fuzz_target: tuple[str, Recorder],
    prefix: str,
    auth_rest: str,
    extra: dict[str, str],
    query: str,
    body: bytes,
    method: str,
    keyproxy: bool,
    vendor: str,
) -> None:
    url, up = fuzz_target
    extra = {
        k: v for k, v in extra.items() if k.lower() != "transfer-encoding" or v.lower() == "chunked"
    }
    headers = {**extra, "Authorization": prefix + auth_rest}
    if keyproxy:
        headers.update(
            {
                "X-Mcdn-Origin-Uri": f"https://api.example.{vendor}.com/p?{query}",
                "X-Mcdn-Cloud-Account-Name": f"acct-{vendor}",
                "X-Mcdn-Kept-Headers": ",".join(["authorization", *[k.lower() for k in extra]]),
            }
        )
    before = len(up.seen)
    try:
        r = requests.request(
            method,
            f"{url}/p?{query}",
            headers=headers,
            data=body,
            timeout=15,
            allow_redirects=False,
        )
    except requests.exceptions.InvalidHeader:
        return  # the client library refuses to send it: nothing to test
    except requests.exceptions.ConnectionError:
        return  # the proxy may close on protocol-level garbage; it must not answer 5xx
    STATS["requests"] += 1
    reached = len(up.seen) > before
    assert r.status_code < 500 or (reached and r.status_code != 500), (r.status_code, r.text[:300])
    if not reached:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])


@pytest.mark.slow
def test_never_5xx(fuzz_target: tuple[str, Recorder]) -> None:
    # the property, then proof that it really sent requests (the client library refuses some)
    STATS["requests"] = 0
    _never_5xx(fuzz_target)
    print(f"fuzz: {STATS['requests']} requests sent, none answered 5xx")
    assert STATS["requests"] >= 100, STATS
