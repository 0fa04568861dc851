"""Wangsu API-key (Basic over an HMAC of the date): reference vectors, interop both ways with
an independent implementation written from the public documentation, parse errors.

No installable SDK signs this scheme (see ``tests/signers/wangsu_upstream.py``): the
documentation-based reference implementation stands in for the vendor SDK.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.wangsu import SIGNER
from tests.signers.wangsu_upstream import docs_authorization, docs_date

VECTORS = Path(__file__).parent.parent / "vectors" / "wangsu"
PROXY = Credential("wsproxyuser", Secret("wangsu-proxy-apikey"))
REAL = Credential("wsrealuser", Secret("wangsu-real-apikey"))
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def signed(cred: Credential = PROXY, date: str = DATE, algorithm: str = "sha1",
           header: str = "Date") -> SigningRequest:  # fmt: skip
    auth = docs_authorization(cred.access_key, cred.secret_key.reveal(), date, algorithm)
    headers = CIMultiDict({header: date, "Authorization": auth, "Content-Type": "application/json"})
    return SigningRequest("POST", "open.chinanetcenter.com", "/api/report/x", "a=1", headers)


# --------------------------------------------------------------------------- vectors


def test_doc_date_example() -> None:
    (case,) = load("doc.json")
    assert case["source"].startswith("https://documents.cdnetworks.com/")
    auth = SIGNER.parse(signed(date=case["date"]))
    assert auth.signed_at == datetime.fromisoformat(case["expected"]["signed_at"])


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("header", ["Date", "x-cnc-date"])
def test_reference_signs_proxy_creds_we_verify(algorithm: str, header: str) -> None:
    req = signed(algorithm=algorithm, header=header)
    assert SIGNER.detect(req)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(PROXY.access_key, REAL.secret_key), None)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(REAL.access_key, PROXY.secret_key), None)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("header", ["Date", "x-cnc-date"])
def test_resign_equals_reference_with_real_creds(algorithm: str, header: str) -> None:
    req = signed(algorithm=algorithm, header=header)
    auth = SIGNER.parse(req)
    now = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    SIGNER.resign(req, auth, REAL, None, now)
    date = docs_date(now)
    assert req.headers[header] == date == "Mon, 04 Mar 2024 05:06:07 GMT"
    expected = docs_authorization(REAL.access_key, REAL.secret_key.reveal(), date, algorithm)
    assert req.headers["Authorization"] == expected
    assert len(req.headers.getall(header)) == 1


def test_only_the_date_is_signed() -> None:
    """The documented scheme covers the date alone: a changed path still verifies (the replay
    risk the module docstring describes), a changed date does not."""
    req = signed()
    moved = req.copy()
    moved.path, moved.query, moved.method = "/api/other", "", "DELETE"
    SIGNER.verify(moved, SIGNER.parse(moved), PROXY, None)
    later = req.copy()
    later.headers["Date"] = docs_date(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=1))
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(later, SIGNER.parse(later), PROXY, None)


# --------------------------------------------------------------------------- detect / parse


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def with_headers(**headers: str) -> SigningRequest:
    h = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return SigningRequest("GET", "open.chinanetcenter.com", "/api", "", h)


GOOD_PASSWORD = base64.b64encode(b"\x01" * 20).decode()


def test_detect_is_specific() -> None:
    assert SIGNER.detect(signed())
    assert SIGNER.detect(signed(algorithm="sha256", header="x-cnc-date"))
    plain = with_headers(Authorization=basic("user:hunter2"), Date=DATE)
    assert not SIGNER.detect(plain)  # ordinary Basic auth of some other API
    no_date = signed()
    del no_date.headers["Date"]
    assert not SIGNER.detect(no_date)
    for other in ("QBox a:b", "HMAC-SHA256 Credential=x", "Bearer t"):
        assert not SIGNER.detect(with_headers(Authorization=other, Date=DATE))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer x", "Date": DATE}, "must start with 'Basic '"),
        ({"Authorization": "Basic !!!", "Date": DATE}, "not base64"),
        ({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode(), "Date": DATE},
         "not UTF-8"),
        ({"Authorization": basic("nocolon"), "Date": DATE}, "user:password"),
        ({"Authorization": basic(f":{GOOD_PASSWORD}"), "Date": DATE}, "user:password"),
        ({"Authorization": basic("u:short"), "Date": DATE}, "not base64"),
        ({"Authorization": basic("u:" + base64.b64encode(b"x" * 16).decode()), "Date": DATE},
         "HMAC-SHA1 or HMAC-SHA256"),
        ({"Authorization": basic(f"u:{GOOD_PASSWORD}")}, "Date (or x-cnc-date) header is missing"),
        ({"Authorization": basic(f"u:{GOOD_PASSWORD}"), "Date": "2024-01-01T00:00:00Z"},
         "RFC 1123"),
        ({"Authorization": basic(f"u:{GOOD_PASSWORD}"), "Date": "Mon, 32 Jan 2024 00:00:00 GMT"},
         "not a valid date"),
        ({"Authorization": basic(f"u:{GOOD_PASSWORD}"), "Date": "Mon, 01 Jan 2024 00:00:00 PST"},
         "RFC 1123"),
        ({"Authorization": "Basic " + "A" * 2000, "Date": DATE}, "longer than"),
    ],
)  # fmt: skip
def test_malformed(headers: dict[str, str], message: str) -> None:
    req = SigningRequest("GET", "h", "/", "", CIMultiDict(headers))
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req)
    assert message in str(exc.value)
    assert GOOD_PASSWORD not in str(exc.value)
    assert exc.value.status == 400


def test_repeated_headers_refused() -> None:
    req = signed()
    req.headers.add("Date", DATE)
    with pytest.raises(MalformedSignature, match="Date appears more than once"):
        SIGNER.parse(req)
    req = signed()
    req.headers.add("Authorization", req.headers["Authorization"])
    with pytest.raises(MalformedSignature, match="exactly one Authorization"):
        SIGNER.parse(req)


def test_registry_and_endpoint() -> None:
    assert signers.get("wangsu") is SIGNER
    req = signed()
    auth = SIGNER.parse(req)
    assert SIGNER.native_upstream(req, auth) == "https://open.chinanetcenter.com"
    assert "apikey" not in repr(auth.state) and GOOD_PASSWORD not in repr(auth.state)
