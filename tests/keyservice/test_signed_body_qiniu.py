"""Key-service requests must sign the time, or a captured one is good forever (the replay
cache keys on the signed time): Qiniu's SDK signing ``QBox`` or an undated ``Qiniu`` signature
is refused even over a body it signs; the dated ``Qiniu`` form gets through authentication
with a body it signs, and is refused with one it leaves out (``application/octet-stream``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from qiniu import Auth, QiniuMacAuth
from qiniu.auth import QiniuMacRequestsAuth, RequestsAuth

from keybroker.settings import KeyPolicy
from tests.keyservice.helpers import ALL_OPS, PREFIX, KeyBroker, account, error_code, keybroker

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def qn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyBroker]:
    accounts = {"qn": account("qn", KeyPolicy(prefixes=[], operations=ALL_OPS), vendor="qiniu")}
    with keybroker(tmp_path_factory.mktemp("qiniu"), accounts=accounts) as running:
        yield running


def _auth(kb: KeyBroker, kind: str) -> Any:
    acct = kb.accounts["qn"]
    if kind == "qbox":
        return RequestsAuth(Auth(acct.access_key, acct.secret_key))
    mac = QiniuMacAuth(
        acct.access_key, acct.secret_key, disable_qiniu_timestamp_signature=kind == "undated"
    )
    return QiniuMacRequestsAuth(mac)


def _message(answer: requests.Response) -> str:
    return str(answer.json()["ResponseMetadata"]["Error"]["Message"])


@pytest.mark.parametrize("kind", ["qbox", "undated"])
def test_a_scheme_that_signs_no_time_is_refused(qn: KeyBroker, kind: str) -> None:
    answer = requests.post(
        f"{qn.url}{PREFIX}/generate", data="id=x", headers=FORM, auth=_auth(qn, kind), timeout=10
    )
    assert answer.status_code == 401, answer.text
    assert error_code(answer) == "Proxy.ValidateCredentialErr"
    assert "signs the time" in _message(answer)


def test_the_dated_form_is_authenticated(qn: KeyBroker) -> None:
    url = f"{qn.url}{PREFIX}/generate"
    answer = requests.post(url, data="id=x", headers=FORM, auth=_auth(qn, "dated"), timeout=10)
    assert answer.status_code == 400, answer.text  # through authentication: not JSON
    assert error_code(answer) == "Proxy.InvalidArgument"
    # JSON is signed too (a body with a content type other than octet-stream): served
    json_body = requests.post(url, json={"id": "x"}, auth=_auth(qn, "dated"), timeout=10)
    assert json_body.status_code == 200, json_body.text
    # an octet-stream body is not signed by the scheme: refused before it is read
    raw = requests.post(
        url,
        data=b'{"id": "x"}',
        headers={"Content-Type": "application/octet-stream"},
        auth=_auth(qn, "dated"),
        timeout=10,
    )
    assert raw.status_code == 401, raw.text
    assert "sign the body" in _message(raw)
