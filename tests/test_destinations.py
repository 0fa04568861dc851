"""Origin URI parsing: the regex shortcut for plain URIs says what urlsplit says."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keybroker.errors import MalformedRequest
from keybroker.proxy.destinations import Destination, parse_base_url, parse_origin_uri


def reference_parse_origin_uri(value: str) -> tuple[Destination, str, str]:
    """parse_origin_uri as it was before the shortcut: urlsplit for every URI."""
    if not value or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise MalformedRequest("X-Mcdn-Origin-Uri must be an absolute http(s) URL")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise MalformedRequest("X-Mcdn-Origin-Uri is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise MalformedRequest("X-Mcdn-Origin-Uri must be an absolute http(s) URL")
    netloc = parts.netloc
    if "@" in netloc or any(c in netloc for c in " \t\r\n\\"):
        raise MalformedRequest("X-Mcdn-Origin-Uri: invalid host")
    try:
        hostinfo = urlsplit(f"//{netloc}")
    except ValueError:
        raise MalformedRequest(f"invalid host {netloc!r}") from None
    try:
        host, port = hostinfo.hostname or "", hostinfo.port
    except ValueError:
        raise MalformedRequest(f"invalid port in host {netloc!r}") from None
    if not host:
        raise MalformedRequest("X-Mcdn-Origin-Uri: missing host")
    default = 443 if parts.scheme.lower() == "https" else 80
    bracketed = f"[{host}]" if ":" in host else host
    normal = bracketed if port in (None, default) else f"{bracketed}:{port}"
    return Destination(parts.scheme.lower(), normal), parts.path or "/", parts.query


def outcome(parse: object, value: str) -> object:
    try:
        return parse(value)  # type: ignore[operator]
    except MalformedRequest as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("value", ["http://[", "https://[::1/x", "http://a]b/", "http://[x]y/"])
def test_unbalanced_brackets_are_malformed_not_a_crash(value: str) -> None:
    with pytest.raises(MalformedRequest):
        parse_origin_uri(value)


PIECES = [
    "http", "https", "HTTPS", "hTtP", "ftp", ":", "//", "/", "?", "#", "@", "[", "]", ".", "-",
    "%", "\\", " ", "\t", "a", "Z", "0", "9", "host", "sts.amazonaws.com", ":443", ":80",
    ":99999", ":x", "&", "=", "é", "\x7f", "::1", "user:pw",
]  # fmt: skip


@pytest.mark.slow
@settings(max_examples=3000)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
@example("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&Nonce=123")
@example("HTTP://Bucket.S3.amazonaws.com/Key%20x?a=1?b#frag")
@example("https://host?x")
@example("https://host")
@example("https://-")
@example("https://a..b./p")
def test_plain_uris_parse_as_urlsplit_says(value: str) -> None:
    assert outcome(parse_origin_uri, value) == outcome(reference_parse_origin_uri, value)


@pytest.mark.slow
@settings(max_examples=1000)
@given(
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[A-Za-z0-9.\-]{0,20}", fullmatch=True),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)
def test_generated_uris_parse_as_urlsplit_says(scheme: str, host: str, rest: str) -> None:
    value = f"{scheme}://{host}{rest}"
    assert outcome(parse_origin_uri, value) == outcome(reference_parse_origin_uri, value)


def test_plain_origin_uri() -> None:
    dest, path, query = parse_origin_uri("HTTPS://STS.amazonaws.com?Action=X&V=1")
    assert (dest, path, query) == (Destination("https", "sts.amazonaws.com"), "/", "Action=X&V=1")
    assert dest.hostname == "sts.amazonaws.com"


@pytest.mark.parametrize(
    ("value", "host"),
    [("https://H.example.com:8443/base/", "h.example.com:8443"), ("http://h:80", "h")],
)
def test_base_url_hosts(value: str, host: str) -> None:
    assert parse_base_url(value).host == host
