"""The signers' fast paths (plain queries and paths, prepared HMACs, time stamps without
``strftime``) give exactly what the general code gives, on any input.

Each reference below is the general code as it was before the fast paths were added; results
and errors (type and message) must be the same, for random queries and paths made of
arbitrary characters, ``%`` escapes (well-formed or not, either case), ``+``, ``=``, ``&``,
non-ASCII text and lone surrogates.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybroker.errors import MalformedSignature
from keybroker.signers import common, encoding, hmac_keys, volcengine
from keybroker.signers.sigv4 import canonical as _sigv4_canonical

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_pieces = st.one_of(
    st.text("AZaz09-_.~", min_size=1, max_size=6),
    st.sampled_from(["%", "+", "=", "&", "/", " ", "%2F", "%2f", "%7E", "%41", "%C3%A9", "%FF"]),
    st.from_regex(r"%[0-9A-Fa-f]{2}", fullmatch=True),
    st.from_regex(r"%[0-9A-Za-z]{0,2}", fullmatch=True),
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.just("X-Amz-Signature"),
)
texts = st.lists(_pieces, max_size=12).map("".join)
#: text close to the fast paths' edge: plain characters and a few that end a fast path
_plain_run = st.text("aZ0-_.~", min_size=1, max_size=4)
_edge = st.sampled_from(["=", "&", "%", "+", "/", " ", "*", "é", "%4", "%G1", "%C3%A9"])
_escape = st.integers(0, 255).flatmap(lambda b: st.sampled_from([f"%{b:02X}", f"%{b:02x}"]))
near_plain = st.lists(
    st.one_of(_plain_run, _plain_run, st.sampled_from(["=", "&", "/"]), _edge, _escape),
    max_size=10,
).map("".join)


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Mostly query-shaped text (``name=value&...``), sometimes anything at all."""
    pairs = draw(st.lists(st.tuples(texts, st.none() | texts), max_size=5))
    shaped = "&".join(k if v is None else f"{k}={v}" for k, v in pairs)
    return draw(st.sampled_from([shaped, draw(near_plain), draw(near_plain), draw(texts)]))


def outcome(fn: Callable[[], object]) -> object:
    """The result, or the error's type and message."""
    try:
        return fn()
    except Exception as exc:  # compared, never swallowed: any difference fails the test
        return type(exc), str(exc)


# --------------------------------------------------------------- SigV4: the general code


def ref_decode_component(text: str) -> str:
    try:
        raw = unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise MalformedSignature("query string contains invalid characters") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedSignature("query string is not valid UTF-8") from None


def ref_decode_query(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&"):
        if part:
            key, _, val = part.partition("=")
            pairs.append((ref_decode_component(key), ref_decode_component(val)))
    return pairs


def ref_encode_component(text: str) -> str:
    return quote(text.encode("utf-8", "surrogateescape"), safe="-_.~")


def ref_canonical_query(raw: str, drop_signature: bool) -> tuple[str, ...]:
    encoded = []
    for key, val in ref_decode_query(raw):
        if not (drop_signature and key == "X-Amz-Signature"):
            encoded.append((ref_encode_component(key), ref_encode_component(val)))
    spec = "&".join(f"{k}={v}" for k, v in sorted(encoded))
    if not raw.isascii():
        return (spec,)
    kept = []
    for part in raw.split("&") if raw else []:
        key, _, val = part.partition("=")
        if not (drop_signature and key == "X-Amz-Signature"):
            kept.append((key, val))
    as_sent = "&".join(f"{k}={v}" for k, v in sorted(kept))
    return (spec,) if as_sent == spec else (spec, as_sent)


def ref_canonical_uri(path: str, raw: bool) -> list[str]:
    path = path or "/"
    try:
        wire = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise MalformedSignature("request path contains invalid characters") from None
    if not raw:
        cleaned = _sigv4_canonical._remove_dot_segments(path)
        return [quote(cleaned.encode("utf-8", "surrogateescape"), "/~")]
    as_sent = quote(wire, safe="/~%!$&'()*+,;=:@-._")
    reencoded = quote(unquote_to_bytes(wire), safe="/~")
    return [as_sent] if reencoded == as_sent else [as_sent, reencoded]


@pytest.mark.slow
@SETTINGS
@given(queries())
@example("Action=GetCallerIdentity&Version=2011-06-15&Nonce=7")
@example("X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab")
@example("a=%7e&b=%2f&c=%C3%A9&d=a=b&&=&e")
@example("a+=b&c=%2F&d=%41")
def test_sigv4_query_fast_paths_agree(raw: str) -> None:
    check_sigv4_query(raw)


def check_sigv4_query(raw: str) -> None:
    assert outcome(lambda: _sigv4_canonical.decode_query(raw)) == outcome(
        lambda: ref_decode_query(raw)
    )
    for drop in (False, True):
        assert outcome(
            lambda: _sigv4_canonical.canonical_query(raw, drop_signature=drop)
        ) == outcome(lambda: ref_canonical_query(raw, drop))


@pytest.mark.slow
@SETTINGS
@given(texts)
def test_sigv4_encode_component_agrees(text: str) -> None:
    assert outcome(lambda: _sigv4_canonical.encode_component(text)) == outcome(
        lambda: ref_encode_component(text)
    )


@pytest.mark.slow
@SETTINGS
@given(
    st.lists(st.one_of(texts, near_plain, st.sampled_from(["", ".", ".."])), max_size=5).map(
        "/".join
    )
)
@example("")
@example("/a/./b/../c//d/")
def test_sigv4_canonical_uri_agrees(path: str) -> None:
    check_sigv4_uri(path)


def check_sigv4_uri(path: str) -> None:
    for raw in (False, True):
        assert outcome(lambda: _sigv4_canonical.canonical_uri(path, raw=raw)) == outcome(
            lambda: ref_canonical_uri(path, raw)
        )


# --------------------------------------------------------------- shared and Volcengine code


def ref_common_decode_query(raw: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append(
                (
                    unquote_to_bytes(name.replace("+", " ")),
                    unquote_to_bytes(value.replace("+", " ")),
                )
            )
    return pairs


def ref_segment_encoded_uri(raw_path: str) -> str:
    if not raw_path:
        return "/"
    return "/".join(quote(unquote_to_bytes(seg), safe="") for seg in raw_path.split("/"))


def ref_volc_canonical_query(raw: str, keep: frozenset[str] | None) -> str:
    pairs = [
        (quote(nb, safe=""), quote(vb, safe=""))
        for nb, vb in ref_common_decode_query(raw)
        if keep is None or nb.decode("utf-8", "replace") in keep
    ]
    pairs.sort(key=lambda p: p[0])
    return "&".join(f"{k}={v}" for k, v in pairs)


@pytest.mark.slow
@SETTINGS
@given(queries(), st.none() | st.frozensets(st.sampled_from(["a", "b", "Action", "é", "a b"])))
@example("Action=ListUsers&Version=2018-01-01&Nonce=3", None)
@example("b=2&a=1&a=0&c", frozenset({"a", "c"}))
@example("a+=b", None)
@example("a=b+c&d", None)
@example("a%20=b&a=%41", frozenset({"a", "a b"}))
def test_volcengine_query_fast_paths_agree(raw: str, keep: frozenset[str] | None) -> None:
    check_volcengine_query(raw, keep)


def check_volcengine_query(raw: str, keep: frozenset[str] | None) -> None:
    assert outcome(lambda: encoding.decode_query(raw)) == outcome(
        lambda: ref_common_decode_query(raw)
    )
    assert outcome(lambda: volcengine.canonical_query(raw, keep)) == outcome(
        lambda: ref_volc_canonical_query(raw, keep)
    )


@SETTINGS
@given(st.binary(max_size=12) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_encode_unreserved_agrees(raw: bytes) -> None:
    assert encoding.encode_unreserved(raw) == quote(raw, safe="")


@pytest.mark.slow
@SETTINGS
@given(st.lists(texts | near_plain, max_size=5).map("/".join))
def test_segment_encoded_uri_agrees(path: str) -> None:
    check_segment_uri(path)


def check_segment_uri(path: str) -> None:
    assert outcome(lambda: encoding.segment_encoded_uri(path)) == outcome(
        lambda: ref_segment_encoded_uri(path)
    )


@pytest.mark.parametrize("byte", range(256))
def test_every_single_escape_agrees(byte: int) -> None:
    """Each escape, in either case, beside plain text: where the fast paths end."""
    for escape in {f"%{byte:02X}", f"%{byte:02x}"}:
        for raw in (f"a{escape}=b", f"a=b{escape}&c=d", escape, f"{escape}={escape}"):
            check_sigv4_query(raw)
            check_volcengine_query(raw, None)
            check_sigv4_uri("/" + raw)
            check_segment_uri("/" + raw)


@pytest.mark.parametrize(
    "raw", ["a" * 50_000 + "=b=c", "%2F" * 20_000 + "%", "a=b&" * 20_000 + "=="]
)
def test_long_queries_take_linear_time(raw: str) -> None:
    """The fast-path patterns never backtrack much: a long near miss is still quick."""
    started = time.perf_counter()
    check_sigv4_query(raw)
    check_volcengine_query(raw, None)
    assert time.perf_counter() - started < 5.0


# --------------------------------------------------------------- HMAC and time stamps


@pytest.mark.slow
@SETTINGS
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_prepared_hmac_is_hmac_sha256(key: bytes, msg: bytes) -> None:
    expected = hmac.new(key, msg, hashlib.sha256)
    prepared = hmac_keys.PreparedHmac(key)
    assert prepared.digest(msg) == expected.digest()
    assert hmac_keys.prepared_hmac(key).hexdigest(msg) == expected.hexdigest()


def test_prepared_hmac_never_shows_its_key() -> None:
    assert "secret" not in repr(hmac_keys.PreparedHmac(b"secret"))


@SETTINGS
@given(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
)
@example(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC))
@example(datetime(1000, 1, 1, tzinfo=UTC))
def test_compact_time_is_strftime(when: datetime) -> None:
    expected = outcome(lambda: when.astimezone(UTC).strftime(common.COMPACT_TIME_FORMAT))
    assert outcome(lambda: common.compact_time(when)) == expected
