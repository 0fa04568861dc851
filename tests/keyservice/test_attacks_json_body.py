"""Attack: a JSON body that means one id to one reader and another id to the next.

A body with the same field twice (``{"id": "tenant-b/x", "id": "tenant-a/x"}``) is read by
Python's ``json`` as its *last* value and by many others (Go's ``encoding/json`` keeps the last
too, but Jackson-based gateways, several WAFs and log pipelines keep the first or refuse): a
filter in front of keybroker that checks or records the first ``id`` sees another key than the
one served.  So a duplicate field, at any depth, is a 400; so is a field name that differs only
in case from a known one, as before.  Over a real server, signed with botocore."""

from __future__ import annotations

import json

import pytest

from tests.keyservice.helpers import KeyBroker, error_code


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("generate", b'{"id": "tenant-b/x", "id": "tenant-a/dup", "size": 32}'),
        ("generate", b'{"id": "tenant-a/dup", "size": 16, "size": 32}'),
        ("unwrap", b'{"id": "tenant-a/dup", "blob": "S0JESw==", "blob": "S0JESw=="}'),
        ("rewrap", b'{"id": "tenant-b/x", "blob": "S0JESw==", "id": "tenant-a/dup"}'),
        ("generate", b'{"id": "tenant-a/dup", "ID": "tenant-b/x"}'),
    ],
)
def test_a_field_given_twice_is_refused(kb: KeyBroker, path: str, body: bytes) -> None:
    answer = kb.call("POST", path, who="tenant-a", body=body)
    assert answer.status_code == 400, answer.text
    assert error_code(answer) == "Proxy.InvalidArgument"
    assert "plaintext" not in answer.text


def test_a_body_with_each_field_once_still_works(kb: KeyBroker) -> None:
    body = json.dumps({"id": "tenant-a/once", "size": 32}).encode()
    answer = kb.call("POST", "generate", who="tenant-a", body=body)
    assert answer.status_code == 200, answer.text
