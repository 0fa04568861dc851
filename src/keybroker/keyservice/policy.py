"""Key policies: which key operations an account may run, on which key ids.

A policy is an endpoint's ``KeyPolicy`` (:class:`keybroker.settings.KeyPolicy`):

- no ``KeyPolicy`` at all: the account may not use the key service (deny by default: proxy
  credentials were handed out for cloud APIs, not for keys);
- ``Operations``: the operations granted (``get``, ``create``, ``generate``, ``unwrap``,
  ``rewrap``, ``list``, ``delete``, ``status``), or ``*`` for all of them;
- ``Prefixes``: plain, case-sensitive id prefixes (``tenant-a/``); an empty list means every id.

Listing is granted per id: a caller sees only ids inside its prefixes, and asking for a prefix
that cannot overlap any of them is a denial rather than an empty answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from keybroker.errors import Forbidden
from keybroker.settings import KeyPolicy

__all__ = ["ALL", "allows", "can_list", "check", "visible"]

#: The wildcard operation.
ALL = "*"


def _grants(policy: KeyPolicy | None, operation: str) -> bool:
    if policy is None:
        return False
    return ALL in policy.operations or operation in policy.operations


def _covers(policy: KeyPolicy, key_id: str) -> bool:
    return not policy.prefixes or any(key_id.startswith(p) for p in policy.prefixes)


def allows(policy: KeyPolicy | None, operation: str, key_id: str | None = None) -> bool:
    """May ``operation`` run on ``key_id`` (``None``: an operation without an id)?"""
    if policy is None or not _grants(policy, operation):
        return False
    return key_id is None or _covers(policy, key_id)


def check(policy: KeyPolicy | None, operation: str, key_id: str | None = None) -> None:
    """Raises ``Forbidden`` (403) unless :func:`allows`; the message names the operation only
    (whether an id exists is not disclosed)."""
    if not allows(policy, operation, key_id):
        target = "" if key_id is None else " on this key id"
        raise Forbidden(f"the key policy does not allow '{operation}'{target}")


def can_list(policy: KeyPolicy | None, prefix: str) -> bool:
    """May the caller list ids starting with ``prefix``: is ``list`` granted and can such an
    id lie inside one of its prefixes?"""
    if policy is None or not _grants(policy, "list"):
        return False
    if not policy.prefixes:
        return True
    return any(p.startswith(prefix) or prefix.startswith(p) for p in policy.prefixes)


def visible(policy: KeyPolicy | None, ids: Iterable[str]) -> list[str]:
    """The ids of ``ids`` inside the caller's prefixes, in order."""
    if policy is None:
        return []
    return [i for i in ids if _covers(policy, i)]
