"""Fuzzing the key service's parsers: any body, query or id gets a 4xx with our error code,
never a 500 — directly and through the running proxy."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.keyservice.errors import InvalidArgument
from keybroker.keyservice.http import parse_json, parse_query
from tests.keyservice.helpers import KeyBroker, error_code

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.binary(max_size=300))
def test_parse_json_raises_only_invalid_argument(body: bytes) -> None:
    try:
        doc = parse_json(body, required={"id"}, optional={"size"})
    except InvalidArgument:
        return
    assert set(doc) >= {"id"} and set(doc) <= {"id", "size"}


@given(st.text(max_size=200))
def test_parse_query_raises_only_invalid_argument(raw: str) -> None:
    try:
        out = parse_query(raw, frozenset({"size", "prefix"}))
    except InvalidArgument:
        return
    assert set(out) <= {"size", "prefix"}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=st.dictionaries(st.sampled_from(["id", "blob", "size", "x"]), json_values, max_size=4))
def test_unwrap_over_http_is_always_4xx(kb: KeyBroker, doc: dict[str, object]) -> None:
    response = kb.call("POST", "unwrap", body=json.dumps(doc).encode())
    assert 400 <= response.status_code < 500, response.text
    assert error_code(response).startswith("Proxy.")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key_id=st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="?#%"),
        min_size=0,
        max_size=80,
    ),
    size=st.integers(min_value=-5, max_value=200),
)
def test_dek_ids_and_sizes_over_http(kb: KeyBroker, key_id: str, size: int) -> None:
    from urllib.parse import quote

    response = kb.call("GET", "dek/" + quote(key_id, safe="/"), query={"size": str(size)})
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code == 200:
        assert 1 <= size <= 64
        assert response.json()["id"] == key_id


def test_an_error_message_never_holds_a_key(kb: KeyBroker) -> None:
    key = kb.call("GET", "dek/tenant-a/fz", query={"size": "32"}).json()["plaintext"]
    wrong = kb.call("GET", "dek/tenant-a/fz", query={"size": "16"})
    assert key not in wrong.text
