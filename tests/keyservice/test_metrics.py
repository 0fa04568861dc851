"""Every key operation is counted in ``keybroker_kms_operations_total`` (backend, operation,
outcome) — before, only an external KMS's get/create were, so generate, unwrap, rewrap,
delete, list and status, and everything on a cluster KMS, were invisible."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.keyservice.helpers import KeyBroker, keybroker
from tests.test_metrics import parse


def _ops(kb: KeyBroker) -> dict[tuple[str, str, str], float]:
    r = requests.get(kb.url + "/metrics", timeout=10)
    assert r.status_code == 200
    family = parse(r.text)["keybroker_kms_operations_total"]
    return {
        (labels["backend"], labels["operation"], labels["outcome"]): value
        for (_, frozen), value in family.samples.items()
        for labels in [dict(frozen)]
    }


def _delta(after: dict, before: dict) -> dict:  # type: ignore[type-arg]
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def test_every_key_operation_is_counted(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:
        before = _ops(kb)
        assert kb.call("POST", "dek/tenant-a/one", query={"size": "32"}).status_code == 200
        made = kb.call("POST", "generate", body={"id": "tenant-a/two", "size": 32})
        assert made.status_code == 200
        blob = made.json()["blob"]
        assert kb.call("POST", "unwrap", body={"id": "tenant-a/two", "blob": blob}).ok
        assert kb.call("POST", "rewrap", body={"id": "tenant-a/two", "blob": blob}).ok
        assert kb.call("GET", "ids", query={"prefix": "tenant-a/"}).ok
        assert kb.call("GET", "status").ok
        assert kb.call("DELETE", "dek/tenant-a/one").ok
        refused = kb.call("POST", "unwrap", body={"id": "tenant-a/other", "blob": blob})
        assert refused.status_code >= 400
        after = _ops(kb)
    delta = _delta(after, before)
    for operation in ("create", "generate", "unwrap", "rewrap", "list", "status", "delete"):
        assert delta.get(("local", operation, "ok"), 0) >= 1, (operation, delta)
    assert any(op == "unwrap" and outcome != "ok" for (_, op, outcome) in delta), delta
