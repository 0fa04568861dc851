"""Key-service requests signed whole, with another vendor's marker: Huawei Cloud's SDK
(``huaweicloudsdkcore``) signing ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` is refused on every
route, and the same SDK hashing the body (its default for JSON) is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import KeyPolicy
from tests.keyservice.helpers import ALL_OPS, PREFIX, KeyBroker, account, error_code, keybroker
from tests.keyservice.test_signed_body import ROUTES
from tests.signers.huawei_upstream import sdk_sign


@pytest.fixture(scope="module")
def hw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyBroker]:
    accounts = {"hw": account("hw", KeyPolicy(prefixes=[], operations=ALL_OPS), vendor="huawei")}
    with keybroker(tmp_path_factory.mktemp("huawei"), accounts=accounts) as running:
        yield running


def _send(kb: KeyBroker, method: str, route: str, body: bytes, unsigned: bool) -> requests.Response:
    acct = kb.accounts["hw"]
    path, _, query = route.partition("?")
    extra = {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"} if unsigned else {}
    signed, data = sdk_sign(
        Credential(acct.access_key, Secret(acct.secret_key)),
        method=method,
        host=urlsplit(kb.url).netloc,
        path=f"{PREFIX}/{path}",
        query=[tuple(p.split("=", 1)) for p in query.split("&")] if query else [],  # type: ignore[misc]
        body=body.decode(),
        extra=extra,
    )
    url = f"{kb.url}{signed.path}" + (f"?{signed.query}" if signed.query else "")
    return requests.request(method, url, headers=dict(signed.headers), data=data, timeout=10)


@pytest.mark.parametrize(("method", "route", "doc"), [r for r in ROUTES if r[0] == "POST"])
def test_huawei_unsigned_payload_is_refused_on_every_route_with_a_body(
    hw: KeyBroker, method: str, route: str, doc: dict[str, object] | None
) -> None:
    body = json.dumps(doc).encode() if doc is not None else b""
    answer = _send(hw, method, route, body, unsigned=True)
    assert answer.status_code == 401, answer.text
    assert error_code(answer) == "Proxy.ValidateCredentialErr"
    assert "plaintext" not in answer.text


@pytest.mark.parametrize(("method", "route", "doc"), [r for r in ROUTES if r[0] == "GET"])
def test_huawei_marker_on_a_bodiless_request_still_signs_the_empty_body(
    hw: KeyBroker, method: str, route: str, doc: dict[str, object] | None
) -> None:
    """The SDK (and API Gateway) sign an empty body as the hash of nothing whatever the header
    says, so the signature covers the whole request: served; a body added to it is not."""
    assert _send(hw, method, route, b"", unsigned=True).status_code == 200
    acct = hw.accounts["hw"]
    path, _, query = route.partition("?")
    signed, _ = sdk_sign(
        Credential(acct.access_key, Secret(acct.secret_key)),
        method=method,
        host=urlsplit(hw.url).netloc,
        path=f"{PREFIX}/{path}",
        query=[tuple(p.split("=", 1)) for p in query.split("&")] if query else [],  # type: ignore[misc]
        body="",
        extra={"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
    )
    url = f"{hw.url}{signed.path}" + (f"?{signed.query}" if signed.query else "")
    smuggled = requests.request(
        method, url, headers=dict(signed.headers), data=b'{"id": "x"}', timeout=10
    )
    assert smuggled.status_code in (401, 413), smuggled.text


@pytest.mark.parametrize(("method", "route", "doc"), [r for r in ROUTES if r[0] != "DELETE"])
def test_huawei_sdk_hashing_the_body_is_served(
    hw: KeyBroker, method: str, route: str, doc: dict[str, object] | None
) -> None:
    body = json.dumps(doc).encode() if doc is not None else b""
    answer = _send(hw, method, route, body, unsigned=False)
    expected = 400 if route in ("unwrap", "rewrap") else 200  # a bogus blob reached the store
    assert answer.status_code == expected, answer.text
