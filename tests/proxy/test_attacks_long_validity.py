"""Attack on "a captured request can't be replayed": Baidu's and Volcengine's signatures carry
a validity period the signer chooses (up to 999999999 seconds, 31 years), while the replay
cache remembers a signature for at most 30 days (``MAX_TTL_SECONDS``).  A captured request that
changes something, signed with a one-year validity, was refused as a replay for 30 days and
then accepted again for the rest of the year.  A validity counts for at most as long as the
cache remembers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.errors import RequestExpired
from keybroker.http import netguard
from keybroker.proxy.checks import check_fresh
from keybroker.replay.base import MAX_TTL_SECONDS
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from keybroker.signers.base import ParsedAuth
from tests import logscan
from tests.proxy.harness import proxy_running
from tests.signers.baidu_upstream import sdk_sign

PROXY = Credential("bceproxy" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
REAL = Credential("bcereal" + secrets.token_hex(8), Secret(secrets.token_urlsafe(30)))
logscan.register(*PROXY.secrets(), *REAL.secrets())
YEAR = 365 * 24 * 3600


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    names: list[str] = []

    async def resolve(self: object, host: str, port: int = 0, family: int = 0) -> list[object]:
        names.append(host)
        raise OSError("no network in this test")

    monkeypatch.setattr(netguard.GuardedResolver, "resolve", resolve)
    yield names


def test_a_year_long_signature_is_not_accepted_after_the_replay_cache_forgot_it(
    resolved: list[str],
) -> None:
    endpoint = Endpoint(cloud_account_name="bd", vendor="baidu", proxy=PROXY, real=REAL,
                        upstream=None)  # fmt: skip
    signed_at = datetime.now(UTC) - timedelta(seconds=MAX_TTL_SECONDS + 24 * 3600)
    signed, body = sdk_sign(PROXY, host="bcc.bj.baidubce.com", path="/v2/instance",
                            when=signed_at, expiration=YEAR)  # fmt: skip
    with proxy_running(Config(endpoints=[endpoint]), replay=True) as (url, _):
        headers = {k: v for k, v in signed.headers.items() if k.lower() != "host"}
        headers["Host"] = "bcc.bj.baidubce.com"
        r = requests.post(f"{url}{signed.path}", headers=headers, data=body, timeout=10)
    assert resolved == [], "a 31-day-old signature went upstream"
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    ("age", "ok"), [(MAX_TTL_SECONDS - 60, True), (MAX_TTL_SECONDS + 60, False)]
)
def test_validity_is_capped_at_the_replay_cache_lifetime(age: int, ok: bool) -> None:
    now = datetime.now(UTC)
    auth = ParsedAuth("a", signed_at=now - timedelta(seconds=age), expires=YEAR)
    if ok:
        check_fresh(auth, lambda: now, Config())
    else:
        with pytest.raises(RequestExpired):
            check_fresh(auth, lambda: now, Config())
