"""Key policies: deny without a KeyPolicy, operations, wildcard, prefixes, listing."""

from __future__ import annotations

import pytest

from keybroker.errors import Forbidden
from keybroker.keyservice import policy
from keybroker.settings import KeyPolicy


def test_no_policy_denies_everything() -> None:
    assert not policy.allows(None, "get", "x")
    assert not policy.allows(None, "status")
    assert not policy.can_list(None, "")
    assert policy.visible(None, ["a"]) == []


def test_operations_and_prefixes() -> None:
    p = KeyPolicy(prefixes=["tenant-a/"], operations=["get"])
    assert policy.allows(p, "get", "tenant-a/x")
    assert not policy.allows(p, "get", "tenant-b/x")
    assert not policy.allows(p, "get", "Tenant-a/x")  # ids are case-sensitive
    assert not policy.allows(p, "create", "tenant-a/x")
    with pytest.raises(Forbidden, match="does not allow 'create' on this key id"):
        policy.check(p, "create", "tenant-a/x")


def test_wildcard_and_empty_prefixes() -> None:
    p = KeyPolicy(prefixes=[], operations=["*"])
    for op in ("get", "create", "delete", "list", "status"):
        assert policy.allows(p, op, "anything")
    assert policy.can_list(p, "whatever")


def test_listing_prefix_overlap() -> None:
    p = KeyPolicy(prefixes=["tenant-a/"], operations=["list"])
    assert policy.can_list(p, "")
    assert policy.can_list(p, "ten")
    assert policy.can_list(p, "tenant-a/sub")
    assert not policy.can_list(p, "tenant-b/")
    assert policy.visible(p, ["tenant-a/1", "tenant-b/2", "tenant-a"]) == ["tenant-a/1"]
    assert not policy.can_list(KeyPolicy(prefixes=[], operations=["get"]), "")
