"""HTTP-layer refusals folded for the audit log: bounded records, no refusal uncounted."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.audit.refusals import RefusalFolder
from keybroker.audit.trail import AuditLog

SOURCES = st.one_of(
    st.sampled_from(["127.0.0.1", "192.0.2.1", None]),
    st.ip_addresses().map(str),
)
REASONS = st.sampled_from(["bad request", "request headers not received in time", "too many"])


@settings(max_examples=60, deadline=None)
@given(refusals=st.lists(st.tuples(SOURCES, REASONS), max_size=400), max_keys=st.integers(1, 16))
def test_any_flood_costs_bounded_records_and_every_refusal_is_counted(
    tmp_path_factory: object, refusals: list[tuple[str | None, str]], max_keys: int
) -> None:
    folder = tmp_path_factory.mktemp("refusals")  # type: ignore[attr-defined]
    with AuditLog(folder) as log:
        folder_log = RefusalFolder(lambda: log, max_keys=max_keys)
        for source, reason in refusals:
            folder_log.add(source, reason)
        assert folder_log.pending <= max_keys + 3  # plus one "other" key per reason
        written = folder_log.flush()
        assert folder_log.pending == 0
    lines = [json.loads(x) for x in (Path(folder) / "audit.log").read_text().splitlines()]
    assert len(lines) == written <= max_keys + 3
    assert sum(x["count"] for x in lines) == len(refusals)
    for x in lines:
        assert x["event"] == "refused" and x["first"] <= x["last"]


def test_refusals_that_cannot_be_written_are_kept_for_the_next_flush(tmp_path: Path) -> None:
    current: list[AuditLog] = [AuditLog(tmp_path)]
    folder = RefusalFolder(lambda: current[0])
    current[0].close()  # a log that refuses every record
    for _ in range(5):
        folder.add("198.51.100.9", "bad request")
    assert folder.flush() == 0 and folder.pending == 1
    folder.add("198.51.100.9", "bad request")
    current[0] = AuditLog(tmp_path)
    assert folder.flush() == 1
    current[0].close()
    (line,) = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert line["count"] == 6 and line["source_ip"] == "198.51.100.9"
