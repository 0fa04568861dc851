"""parse_uri / ParsedURI / resolve_secret: exact messages, decode-once semantics, fuzzing."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.kms.errors import KMSConfigError
from keybroker.kms.uri import SECRET_PARAMS, ParsedURI, parse_uri, resolve_secret

BAD_NAME = (
    "kms:// URI backend name must be lowercase letters, digits and dashes (no user, port or path)"
)


def test_basic() -> None:
    p = parse_uri("kms://aws?region=eu-west-1&keyName=alias/k")
    assert (p.scheme, p.name, p.params) == (
        "kms",
        "aws",
        {"region": "eu-west-1", "keyName": "alias/k"},
    )
    assert p.label == "kms://aws"


@pytest.mark.parametrize(
    ("uri", "name"),
    [("storage://no-store", "no-store"), ("storage://memory?", "memory"), ("KMS://aws/", "aws")],
)
def test_names(uri: str, name: str) -> None:
    assert parse_uri(uri).name == name
    assert parse_uri(uri).params == {}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("a%2Bb", "a+b"),  # a plus sign, as Go's url.QueryEscape writes it
        ("a%20b", "a b"),
        ("100%25", "100%"),
        ("%252B", "%2B"),  # decoded exactly once
        ("x%3Dy%26z", "x=y&z"),
        ("a=b", "a=b"),  # only the first '=' separates
        ("%C3%BC", "ü"),
        ("ü", "ü"),
        ("", ""),
    ],
)
def test_decoded_exactly_once(raw: str, value: str) -> None:
    assert parse_uri(f"kms://aws?accessKey={raw}").params == {"accessKey": value}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("aws?x=1", "URI must look like kms://<name>?... or storage://<name>?..."),
        ("", "URI must look like kms://<name>?... or storage://<name>?..."),
        ("http://aws", "URI scheme must be kms:// or storage://"),
        ("kms://", "kms:// URI has no backend name"),
        ("kms://?a=b", "kms:// URI has no backend name"),
        (
            "kms://AWS",
            BAD_NAME,
        ),
        (
            "kms://user@aws",
            BAD_NAME,
        ),
        (
            "kms://aws:443",
            BAD_NAME,
        ),
        (
            "kms://aws/path",
            BAD_NAME,
        ),
        ("kms://aws#frag", "kms://aws: URI must not have a fragment"),
        ("kms://aws?a=1#frag", "kms://aws: URI must not have a fragment"),
        ("kms://aws?a=1&a=2", "kms://aws: parameter a is given more than once"),
        ("kms://aws?a=1&SECRETVALUE", "kms://aws: query component 2 is not name=value"),
        ("kms://aws?a=1&&b=2", "kms://aws: query component 2 is not name=value"),
        ("kms://aws?=x", "kms://aws: query component 1 has an invalid parameter name"),
        ("kms://aws?a%20b=x", "kms://aws: query component 1 has an invalid parameter name"),
        ("kms://aws?1a=x", "kms://aws: query component 1 has an invalid parameter name"),
        ("kms://aws?k=50%", "kms://aws: parameter k has a malformed %-escape"),
        ("kms://aws?k=%zz", "kms://aws: parameter k has a malformed %-escape"),
        ("kms://aws?k=%C3", "kms://aws: parameter k is not valid UTF-8"),
        ("kms://aws?k=%FF", "kms://aws: parameter k is not valid UTF-8"),
        ("kms://aws?k=\udc80", "kms://aws: parameter k is not valid UTF-8"),
        (
            "kms://" + "a" * 70,
            BAD_NAME,
        ),
        ("kms://aws?k=" + "x" * 20000, "URI is longer than 16384 characters"),
    ],
)
def test_errors_exact(uri: str, message: str) -> None:
    with pytest.raises(KMSConfigError) as info:
        parse_uri(uri)
    assert str(info.value) == message


def test_errors_never_echo_values() -> None:
    for uri in ("kms://aws?k=SECRET%zz", "kms://aws?k=SECRET%FF", "kms://aws?SECRET"):
        with pytest.raises(KMSConfigError) as info:
            parse_uri(uri)
        assert "SECRET" not in str(info.value)


def test_non_string() -> None:
    with pytest.raises(KMSConfigError, match=r"^URI must be a string$"):
        parse_uri(b"kms://aws")  # type: ignore[arg-type]


def test_require_names_every_missing_parameter() -> None:
    p = parse_uri("kms://aws?region=x&accessKey=")
    with pytest.raises(KMSConfigError) as info:
        p.require("region", "accessKeyID", "accessKey", "keyName")
    assert str(info.value) == "kms://aws: missing parameter(s): accessKeyID, accessKey, keyName"
    assert p.require("region") == {"region": "x"}


def test_optional() -> None:
    p = parse_uri("storage://aws?endpoint=http://h:1&empty=")
    assert p.optional("endpoint") == "http://h:1"
    assert p.optional("absent") is None
    assert p.optional("absent", "d") == "d"
    with pytest.raises(KMSConfigError, match=r"^storage://aws: parameter empty is empty$"):
        p.optional("empty")


def test_check_known_names_every_unknown_parameter() -> None:
    p = parse_uri("kms://gcp?projectID=p&zz=1&extra=2")
    with pytest.raises(KMSConfigError) as info:
        p.check_known("projectID", "location")
    assert str(info.value) == "kms://gcp: unknown parameter(s): extra, zz"
    p.check_known("projectID", "zz", "extra")


def test_repr_hides_values() -> None:
    p = parse_uri("kms://aws?accessKey=TOPSECRET")
    assert "TOPSECRET" not in repr(p)
    assert repr(p) == "ParsedURI('kms://aws', params=['accessKey'])"


# -- secrets ----------------------------------------------------------------------------------


def test_resolve_literal() -> None:
    assert resolve_secret("plain+value").reveal() == "plain+value"
    assert resolve_secret("literal:env:NOT_A_VAR").reveal() == "env:NOT_A_VAR"
    assert repr(resolve_secret("x")) == "Secret('***')"


def test_resolve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_TEST_SECRET", "s3cr3t")
    assert resolve_secret("env:KB_TEST_SECRET").reveal() == "s3cr3t"
    monkeypatch.delenv("KB_TEST_SECRET")
    with pytest.raises(KMSConfigError) as info:
        resolve_secret("env:KB_TEST_SECRET", what="kms://aws accessKey")
    assert str(info.value) == "kms://aws accessKey: environment variable KB_TEST_SECRET is not set"
    with pytest.raises(KMSConfigError, match=r"^secret: env: reference has no variable name$"):
        resolve_secret("env:")


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b"abc\n", "abc"),
        (b"abc\r\n", "abc"),
        (b"abc\n\n", "abc\n"),  # only one newline is stripped
        (b"abc", "abc"),
        (b"abc\r", "abc\r"),
        (b" a b ", " a b "),
    ],
)
def test_resolve_file(tmp_path: Path, content: bytes, value: str) -> None:
    f = tmp_path / "s"
    f.write_bytes(content)
    assert resolve_secret(f"file:{f}").reveal() == value


def test_resolve_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(KMSConfigError) as info:
        resolve_secret(f"file:{missing}", what="k")
    assert str(info.value) == f"k: cannot read file {missing}: No such file or directory"
    binary = tmp_path / "bin"
    binary.write_bytes(b"SECRET\xff")
    with pytest.raises(KMSConfigError) as info:
        resolve_secret(f"file:{binary}", what="k")
    assert str(info.value) == f"k: file {binary} is not UTF-8 text"
    with pytest.raises(KMSConfigError, match=r"^secret: file: reference has no path$"):
        resolve_secret("file:")


# -- fuzzing ----------------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_fuzz_only_kms_config_error(text: str) -> None:
    for uri in (text, "kms://" + text, "storage://aws?" + text):
        try:
            parsed = parse_uri(uri)
        except KMSConfigError:
            continue
        assert isinstance(parsed, ParsedURI)
        assert parsed.scheme in ("kms", "storage")


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)


@given(st.dictionaries(_names, st.text(max_size=40), max_size=6))
def test_fuzz_quoted_roundtrip(params: dict[str, str]) -> None:
    try:
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params.items())
    except UnicodeEncodeError:
        return  # lone surrogates cannot be put in a URI at all
    assert parse_uri(f"storage://x?{query}").params == params


@given(st.dictionaries(_names, st.text(max_size=40), max_size=6))
def test_fuzz_go_query_escape_roundtrip(params: dict[str, str]) -> None:
    """Go's url.QueryEscape writes '+' as %2B: such URIs decode to the same values (spaces
    excepted, which QueryEscape writes as '+')."""
    try:
        query = "&".join(f"{k}={urllib.parse.quote_plus(v, safe='')}" for k, v in params.items())
    except UnicodeEncodeError:
        return
    if any(" " in v for k, v in params.items() if k in SECRET_PARAMS):
        with pytest.raises(KMSConfigError, match="has a raw '\\+', which a URI reads as a space"):
            parse_uri(f"storage://x?{query}")
        return
    assert parse_uri(f"storage://x?{query}").params == params  # spaces included
