"""Attack: replay a captured key request on a proxy whose replay cache is turned off.

README: "Key-service requests are always single use", and ``Security.ReplayCache: off`` is
offered as the way to restore key-proxy's behaviour for proxied vendor calls.  With the cache
off, ``check_replay`` has nothing to record in, so a captured ``dek/{id}`` (or ``unwrap``)
request hands the key out again to whoever replays it within the clock-skew window."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.keyservice.helpers import PREFIX, keybroker


@pytest.mark.xfail(
    strict=True,
    reason="with Security.ReplayCache: off nothing makes a key-service request single use; "
    "refusing that setting with KeyService (or a key-service cache of its own) needs the test "
    "harness, which turns the cache off for every test, to change",
)
def test_a_key_request_is_single_use_even_with_the_replay_cache_off(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:  # the harness's default: Security.ReplayCache: off
        assert kb.thread.proxy.config.security.replay_cache == "off"
        acct = kb.accounts["full"]
        req = AWSRequest(method="GET", url=f"{kb.url}{PREFIX}/dek/tenant-a/captured?size=32")
        SigV4Auth(Credentials(acct.access_key, acct.secret_key), "kms", "us-east-1").add_auth(req)
        prepared = req.prepare()
        first = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
        assert first.status_code == 200, first.text
        replayed = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
        assert replayed.status_code == 401, "the replayed request got the key again"
