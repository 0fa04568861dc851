"""A signed key request is good for one use: the same signed request again is 401
Proxy.Replay (the proxy's replay cache), so a captured request cannot fetch the key twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.keyservice.helpers import PREFIX, error_code, keybroker


@pytest.mark.parametrize("protection", ["mutating", "off"])
def test_the_same_signed_request_is_refused_the_second_time(
    tmp_path: Path, protection: str
) -> None:
    """Whatever Security.ReplayProtection says (it is about proxied vendor calls), a key
    request is single use: a GET of a key is not a read anyone may repeat."""
    with keybroker(tmp_path, replay=True, replay_protection=protection) as kb:
        acct = kb.accounts["full"]
        req = AWSRequest(method="GET", url=f"{kb.url}{PREFIX}/dek/tenant-a/once")
        SigV4Auth(Credentials(acct.access_key, acct.secret_key), "kms", "us-east-1").add_auth(req)
        prepared = req.prepare()
        first = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
        assert first.status_code == 200, first.text
        second = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
        assert second.status_code == 401
        assert error_code(second) == "Proxy.Replay"
        fresh = kb.call("GET", "dek/tenant-a/once", query={"size": "32"})  # another request
        assert fresh.status_code == 200
