"""Every key operation leaves one audit line (id, operation, account, decision) and no audit
line holds key material."""

from __future__ import annotations

import base64
from pathlib import Path

from keybroker.audit.verify import verify
from tests.keyservice.helpers import keybroker


def test_every_key_operation_is_audited_without_key_material(tmp_path: Path) -> None:
    with keybroker(tmp_path) as kb:
        calls = [
            ("GET", "dek/tenant-a/a1", "full", None, "create", "allow", 200),
            ("GET", "dek/tenant-a/a1", "reader", None, "get", "allow", 200),
            ("GET", "dek/tenant-b/a1", "tenant-a", None, "get", "deny", 403),
            ("GET", "dek/tenant-a/nope", "reader", None, "create", "deny", 404),
            ("POST", "generate", "tenant-a", {"id": "tenant-a/g"}, "generate", "allow", 200),
            ("GET", "ids", "full", None, "list", "allow", 200),
            ("DELETE", "dek/tenant-a/a1", "full", None, "delete", "allow", 200),
            ("GET", "dek/tenant-a/a1", "full", None, "get", "deny", 409),
            ("GET", "status", "nokeys", None, "status", "deny", 403),
        ]
        for method, path, who, body, *_ in calls:
            kb.call(method, path, who=who, body=body)
        gen = kb.call("POST", "generate", body={"id": "tenant-a/g2"}).json()
        kb.call("POST", "unwrap", body={"id": "tenant-a/g2", "blob": gen["blob"]})
        kb.call("POST", "rewrap", body={"id": "tenant-a/g2", "blob": gen["blob"]})
        kb.call("GET", "dek/tenant-a/x", secret="wrong")
        events = kb.key_events()
        text = (kb.audit_dir / "audit.log").read_bytes()
        secrets_out = list(kb.sent)
    assert len(events) == len(calls) + 4
    for event, (_, path, who, body, operation, decision, status) in zip(
        events, calls, strict=False
    ):
        assert event["api"] == "http"
        assert event["operation"] == operation
        assert event["account"] == who
        assert event["decision"] == decision
        assert event["status"] == status
        expected_id = body["id"] if body else (path[4:] if path.startswith("dek/") else None)
        assert event.get("key_id") == expected_id
        assert event["request_id"]
    assert [e["operation"] for e in events[-4:]] == ["generate", "unwrap", "rewrap", "get"]
    unauthenticated = events[-1]
    assert "account" not in unauthenticated and unauthenticated["status"] == 401
    assert secrets_out, "the calls handed out keys"
    for b64 in secrets_out:
        raw = base64.b64decode(b64)
        assert b64 not in text
        assert raw.hex().encode() not in text
        assert raw not in text
    assert verify(kb.audit_dir).ok
