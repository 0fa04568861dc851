"""Property tests of the audit log: any event makes a sound line; any changed byte is caught."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import AUDIT_FILE_NAME, verify
from keybroker.logs.redact import SecretRegistry, is_secret_name

NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True).filter(
    lambda k: not is_secret_name(k) and k not in {"time", "seq", "prev", "start", "hash"}
)
VALUES = st.one_of(st.none(), st.text(max_size=40), st.integers(), st.booleans())
EVENTS = st.dictionaries(NAMES.filter(lambda k: k != "decision"), VALUES, max_size=8)


@settings(max_examples=60, deadline=None)
@given(events=st.lists(EVENTS, min_size=1, max_size=5))
def test_any_event_gives_a_valid_line_and_chain(events: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with AuditLog(folder, registry=SecretRegistry()) as log:
            for event in events:
                log.record(event)
        lines = (Path(folder) / AUDIT_FILE_NAME).read_bytes().splitlines()
        assert len(lines) == len(events)
        for raw, event in zip(lines, events, strict=True):
            entry = json.loads(raw)
            assert {k: entry[k] for k in event} == event
            assert raw.isascii()
        result = verify(folder)
        assert result.ok and result.lines == len(events)


def _sample_file() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        with AuditLog(folder, registry=SecretRegistry()) as log:
            for i in range(4):
                log.record({"request_id": f"r{i}", "decision": "allow", "status": 200, "n": None})
        return (Path(folder) / AUDIT_FILE_NAME).read_bytes()


SAMPLE = _sample_file()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(SAMPLE) - 1), byte=st.integers(0, 255))
def test_any_changed_byte_fails_verification(position: int, byte: int) -> None:
    if SAMPLE[position] == byte:
        byte ^= 0x01
    tampered = SAMPLE[:position] + bytes([byte]) + SAMPLE[position + 1 :]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / AUDIT_FILE_NAME
        path.write_bytes(tampered)
        result = verify(path)
        assert not result.ok
        # The break is reported at the line holding the changed byte.
        line = SAMPLE[:position].count(b"\n") + 1
        assert result.broken_line == line


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=400))
def test_verify_never_raises_on_junk(junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / AUDIT_FILE_NAME
        path.write_bytes(junk)
        result = verify(path)
        assert result.ok == (junk == b"")
