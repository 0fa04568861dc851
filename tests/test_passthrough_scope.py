"""Where an unverified request may go (``ForbiddenProxyCredentialErr: false``): only to the
vendor's public API host, never the account's ``Upstream`` or ``AllowedHosts``, whatever the
origin URI, method or path; and a verified one never leaves its ``Upstream``'s prefix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import Forbidden, MalformedRequest
from keybroker.proxy.destinations import parse_origin_uri
from keybroker.proxy.hostscope import HostScope
from keybroker.proxy.routing import Accounts, Route, public_request, upstream_request
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from keybroker.signers.base import ParsedAuth, SigningRequest

UPSTREAM = "http://10.0.0.5:8080/gw"
ALLOWED = "internal.example"


def _endpoint() -> Endpoint:
    return Endpoint(
        cloud_account_name="acct",
        vendor="aws",
        proxy=Credential("AKIDPROXY0000000001", Secret("proxy-secret-made-up-1")),
        real=Credential("AKIAREAL00000000001", Secret("real-secret-goes-here")),
        upstream=UPSTREAM,
        allowed_hosts=[ALLOWED],
    )


ACCOUNTS = Accounts(Config(endpoints=[_endpoint()]))
AWS = signers.get("aws")
SCOPE = HostScope("aws", AWS.public_domains, AWS.excluded_hosts)

_HOSTS = st.sampled_from(
    [
        "sts.us-east-1.amazonaws.com",
        "bucket.s3.eu-west-1.amazonaws.com",
        "10.0.0.5:8080",
        "10.0.0.5",
        "127.0.0.1",
        ALLOWED,
        "api." + ALLOWED,
        "my-lb-1.us-east-1.elb.amazonaws.com",
        "x.execute-api.us-east-1.amazonaws.com",
        "evil.example",
        "amazonaws.com.evil.example",
        "169.254.169.254",
    ]
)
_PATHS = st.lists(
    st.sampled_from(["a", "..", ".", "%2e%2e", "%2F", "gw", "b%20c", ";x", "\\"]), max_size=6
).map(lambda xs: "/" + "/".join(xs))


def _route(scheme: str, host: str, path: str, method: str, native: bool) -> Route:
    signed = SigningRequest(method, host, path, "", CIMultiDict(), scheme)
    auth = ParsedAuth("AKIDPROXY0000000001", region="us-east-1", service="sts")
    dest = None if native else parse_origin_uri(f"{scheme}://{host}{path}")[0]
    return Route(_endpoint(), AWS, auth, signed, dest)


@settings(max_examples=300)
@given(
    scheme=st.sampled_from(["https", "http"]),
    host=_HOSTS,
    path=_PATHS,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    native=st.booleans(),
)
def test_unverified_requests_go_only_to_a_vendor_api_host(
    scheme: str, host: str, path: str, method: str, native: bool
) -> None:
    route = _route(scheme, host, path, method, native)
    try:
        up = public_request(route)
    except (Forbidden, MalformedRequest):
        return
    assert up.scheme == "https"
    assert SCOPE.allows(up.host.rsplit(":", 1)[0])
    assert not up.host.startswith("10.0.0.5") and ALLOWED not in up.host
    assert up.path == path  # no Upstream prefix either


@settings(max_examples=300)
@given(host=_HOSTS, path=_PATHS, native=st.booleans())
def test_verified_requests_with_an_upstream_stay_under_its_prefix(
    host: str, path: str, native: bool
) -> None:
    route = _route("https", host, path, "GET", native)
    try:
        up = upstream_request(route, ACCOUNTS)
    except Forbidden:
        return
    assert (up.scheme, up.host) == ("http", "10.0.0.5:8080")
    assert up.path == "/gw" + path


def test_a_forged_request_for_the_upstream_itself_is_refused() -> None:
    with pytest.raises(Forbidden):
        public_request(_route("http", "10.0.0.5:8080", "/gw/x", "DELETE", native=False))
