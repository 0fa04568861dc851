"""Key-proxy routing: which of the client's headers are signed and sent on."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from keybroker.config.loader import loads
from keybroker.proxy.forwarding import HOP_BY_HOP
from keybroker.proxy.routing import CONTROL_HEADERS, Route, Router, kept_headers

CONFIG = """
Http:
  Address: ":3888"
Log:
  Output: "-"
Forbidden:
  ForbiddenAccountNotFound: false
Endpoints:
  - CloudAccountName: "acct"
    Vendor: "aws"
    Credentials:
      Proxy: {AccessKey: "AKIDROUTINGTEST00001", SecretKey: "routing/test/proxy/secret/0000001"}
      Real: {AccessKey: "AKIAROUTINGTEST00001", SecretKey: "routing/test/real/secret/00000001"}
"""
ROUTER = Router(loads(CONFIG, "test"))
ORIGIN = "https://sts.amazonaws.com/?Action=GetCallerIdentity"


class FakeRequest:
    """Only the attributes routing may use."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.method = "GET"
        self.raw_path = "/"
        self.secure = False
        self.remote = "127.0.0.1"
        self.content_length = None
        self.body_exists = False


def run(coro: Coroutine[Any, Any, Route]) -> Route:
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("routing suspended without a body to read")


def reference_copy(request: FakeRequest) -> list[tuple[str, str]]:
    """The header copy as it was: name by name against the three sets, then no Host."""
    kept = kept_headers(request.headers.get("x-mcdn-kept-headers", ""))
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        low = name.lower()
        if low in kept and low not in CONTROL_HEADERS and low not in HOP_BY_HOP:
            headers.add(name, value)
    headers.popall("host", None)
    return list(headers.items())


NAMES = [
    "Authorization", "authorization", "X-Amz-Date", "x-amz-date", "Host", "HOST", "Connection",
    "TE", "Keep-Alive", "\u212aeep-alive", "X-Mcdn-Kept-Headers", "x-mcdn-origin-uri",
    "X-Mcdn-Cloud-Account-Name", "Content-Type", "X-Custom", "x-custom", "Expect", "Ho\u017ft",
]  # fmt: skip
LISTED = [n.lower() for n in NAMES] + ["", " ", "host ", " x-custom", "CONTENT-TYPE"]


@settings(max_examples=500)
@given(
    headers=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["v1", "v2"])), max_size=10),
    kept=st.lists(st.sampled_from(LISTED), max_size=8).map(",".join),
)
def test_keyproxy_copies_the_kept_headers_as_before(
    headers: list[tuple[str, str]], kept: str
) -> None:
    # An unknown account (allowed by the config) is routed without a signature to parse.
    request = FakeRequest(
        [
            ("X-Mcdn-Origin-Uri", ORIGIN),
            ("X-Mcdn-Cloud-Account-Name", "unknown"),
            ("X-Mcdn-Kept-Headers", kept),
            *headers,
        ]
    )
    route = run(ROUTER.keyproxy(request))  # type: ignore[arg-type]
    assert route.endpoint is None
    assert list(route.signed.headers.items()) == reference_copy(request)


def test_unknown_account_route_has_the_kept_headers() -> None:
    request = FakeRequest(
        [
            ("X-Mcdn-Origin-Uri", ORIGIN),
            ("X-Mcdn-Cloud-Account-Name", "nobody"),
            ("X-Mcdn-Kept-Headers", "x-a, Host,connection,x-mcdn-origin-uri"),
            ("Host", "127.0.0.1"),
            ("X-A", "1"),
            ("Connection", "close"),
            ("x-a", "2"),
        ]
    )
    route = run(ROUTER.keyproxy(request))  # type: ignore[arg-type]
    assert route.endpoint is None
    assert list(route.signed.headers.items()) == [("X-A", "1"), ("x-a", "2")]
    assert (route.signed.host, route.signed.query) == (
        "sts.amazonaws.com",
        "Action=GetCallerIdentity",
    )
