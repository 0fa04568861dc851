"""Paths under an Upstream's prefix: no reading of a path a server may apply climbs out."""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.errors import Forbidden
from keybroker.proxy.pathscope import escapes_root, join_under_prefix

PREFIX = "/gw/aws"

ESCAPES = [
    "/..",
    "/../admin",
    "/a/../../admin",
    "/./../admin",
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/%2E./admin",
    "/.%2e/admin",
    "/..%2fadmin",
    "/..%2Fadmin",
    "/a/..%2f..%2fadmin",
    "/..%5cadmin",
    "/..\\admin",
    "/a\\..\\..\\admin",
    "/..;/admin",
    "/..;jsessionid=1/admin",
    "/%252e%252e/admin",
    "/%25252e%25252e/admin",
    "/..%252fadmin",
    "/%c0%ae%c0%ae/admin",
    "/.../admin",
    "/ ../admin",
    "/..%20/admin",
    "//../admin",
]

INSIDE = [
    "/",
    "/bucket/key",
    "/bucket/a/../b",
    "/bucket/key..name",
    "/bucket/..key",
    "/bucket/.hidden",
    "/bucket/%2e%2ekey",
    "/bucket/a/%2e%2e/b",
    "/bucket/x%2Fy",
    "/?",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused(path: str) -> None:
    assert escapes_root(path)
    with pytest.raises(Forbidden):
        join_under_prefix(PREFIX, path)


@pytest.mark.parametrize("path", INSIDE)
def test_paths_inside_stay_as_sent(path: str) -> None:
    assert join_under_prefix(PREFIX, path) == PREFIX + path


def test_no_prefix_no_check() -> None:
    assert join_under_prefix("", "/../x") == "/../x"


def _readings(path: str) -> list[str]:
    """What servers make of a path: as sent, decoded once or twice, backslashes as slashes,
    ';parameters' dropped."""
    out = []
    for p in (path, unquote(path), unquote(unquote(path))):
        for q in (p, p.replace("\\", "/")):
            out.append(q)
            out.append("/".join(seg.split(";", 1)[0] for seg in q.split("/")))
    return out


_PIECES = st.sampled_from(
    ["/", "a", "b", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";x", "%25", "2e", "~"]
)


@given(st.lists(_PIECES, max_size=14).map(lambda xs: "/" + "".join(xs)))
def test_an_accepted_path_never_normalises_outside_the_prefix(path: str) -> None:
    try:
        joined = join_under_prefix(PREFIX, path)
    except Forbidden:
        return
    for reading in _readings(path):
        normal = posixpath.normpath(PREFIX + reading)
        assert normal == PREFIX or normal.startswith(PREFIX + "/"), (path, reading, normal)
    assert joined == PREFIX + path


@given(st.lists(st.from_regex(r"[A-Za-z0-9_~-]{1,8}", fullmatch=True), max_size=6))
def test_paths_without_dot_segments_are_accepted(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert join_under_prefix(PREFIX, path) == PREFIX + path
