"""The audit log: line format, hash chain, tamper detection, rotation, pruning, refusals."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keybroker.audit.event import request_event
from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import AUDIT_FILE_NAME, GENESIS, audit_files, verify
from keybroker.context import RequestContext
from keybroker.errors import ConfigError
from keybroker.logs.redact import SecretRegistry
from keybroker.secret import Secret
from keybroker.settings import AuditConfig
from tests import logscan

T0 = datetime(2026, 11, 25, 17, 13, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(i: int, **extra: object) -> dict[str, object]:
    return {
        "request_id": f"req-{i}",
        "source_ip": "192.0.2.7",
        "account": "acct",
        "vendor": "aws",
        "service": "ec2",
        "action": "DescribeInstances",
        "upstream_host": "ec2.us-east-1.amazonaws.com",
        "decision": "allow",
        "status": 200,
        "latency_ms": 12.5,
        "error_code": None,
        **extra,
    }


def write(directory: Path, n: int, **kwargs: object) -> AuditLog:
    log = AuditLog(directory, **kwargs)  # type: ignore[arg-type]
    for i in range(n):
        log.record(event(i))
    log.close()
    return log


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def parsed(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in raw_lines(path)]


def prefix_hash(line: bytes) -> str:
    """The hash the format defines, computed here independently of the module."""
    cut = line.rindex(b',"hash":"')
    return hashlib.sha256(line[:cut]).hexdigest()


# --- format and chain -------------------------------------------------------------------


def test_known_answer_first_line(tmp_path: Path) -> None:
    with AuditLog(tmp_path, clock=Clock(T0 + 0.25)) as log:
        log.record({"request_id": "r1", "decision": "deny", "status": 403})
    genesis = hashlib.sha256(b"keybroker-audit-v1").hexdigest()
    head = (
        '{"time":"2026-11-25T17:13:00.250Z","seq":1,"prev":"' + genesis + '",'
        '"start":"genesis","request_id":"r1","decision":"deny","status":403'
    ).encode()
    digest = hashlib.sha256(head).hexdigest()
    expected = head + b',"hash":"' + digest.encode() + b'"}\n'
    assert (tmp_path / AUDIT_FILE_NAME).read_bytes() == expected
    assert genesis == GENESIS


def test_events_chain_and_verify(tmp_path: Path) -> None:
    write(tmp_path, 50, clock=Clock())
    lines = raw_lines(tmp_path / AUDIT_FILE_NAME)
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(1, 51))
    assert entries[0]["prev"] == GENESIS and entries[0]["start"] == "genesis"
    assert all("start" not in e for e in entries[1:])
    for before, after, line in zip(entries, entries[1:], lines, strict=False):
        assert after["prev"] == before["hash"] == prefix_hash(line)
    assert all(TIME_RE.match(str(e["time"])) for e in entries)
    assert entries[7]["request_id"] == "req-7" and entries[7]["latency_ms"] == 12.5
    assert list(entries[0])[:4] == ["time", "seq", "prev", "start"]
    assert list(entries[1])[-1] == "hash"
    result = verify(tmp_path)
    assert result.ok and (result.lines, result.files) == (50, 1)
    assert str(result) == "OK: 50 lines in 1 files"
    assert result.first_seq == 1 and result.last_hash == entries[-1]["hash"]


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    write(tmp_path, 3)
    write(tmp_path, 3)
    entries = parsed(tmp_path / AUDIT_FILE_NAME)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert ["start" in e for e in entries] == [True] + [False] * 5
    assert verify(tmp_path).ok


def test_two_writers_interleaving_keep_one_chain(tmp_path: Path) -> None:
    # Two instances stand for two worker processes: each must see the other's lines.
    a, b = AuditLog(tmp_path), AuditLog(tmp_path)
    for i in range(20):
        (a if i % 3 else b).record(event(i))
    a.close()
    b.close()
    assert [e["request_id"] for e in parsed(tmp_path / AUDIT_FILE_NAME)] == [
        f"req-{i}" for i in range(20)
    ]
    assert verify(tmp_path).lines == 20


def test_threads_share_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, max_bytes=40_000)

    def work(t: int) -> None:
        for i in range(100):
            log.record(event(i, thread=t))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    result = verify(tmp_path)
    assert result.ok and result.lines == 800 and result.files > 1, result


# --- tampering --------------------------------------------------------------------------


@pytest.fixture
def ten(tmp_path: Path) -> Path:
    write(tmp_path, 10, clock=Clock())
    return tmp_path / AUDIT_FILE_NAME


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def broken_at(path: Path) -> tuple[int | None, str]:
    result = verify(path)
    assert not result.ok
    assert result.broken_file is not None and result.broken_file.name == path.name
    return result.broken_line, str(result.reason)


def test_edited_field_fails_at_that_line(ten: Path) -> None:
    lines = raw_lines(ten)
    lines[4] = lines[4].replace(b'"status":200', b'"status":201')
    rewrite(ten, lines)
    assert broken_at(ten) == (5, "line hash mismatch (the line was altered)")


def test_edited_line_with_its_hash_recomputed_fails_at_the_next(ten: Path) -> None:
    lines = raw_lines(ten)
    entry = json.loads(lines[4])
    entry["decision"] = "deny"
    del entry["hash"]
    head = json.dumps(entry, separators=(",", ":")).encode()[:-1]
    lines[4] = head + b',"hash":"' + hashlib.sha256(head).hexdigest().encode() + b'"}\n'
    rewrite(ten, lines)
    line, reason = broken_at(ten)
    assert line == 6 and reason.startswith("prev hash does not match")


def test_deleted_line_fails_at_its_place(ten: Path) -> None:
    lines = raw_lines(ten)
    del lines[6]
    rewrite(ten, lines)
    line, reason = broken_at(ten)
    assert line == 7 and reason.startswith("prev hash does not match")


def test_swapped_lines_fail_at_the_first(ten: Path) -> None:
    lines = raw_lines(ten)
    lines[3], lines[4] = lines[4], lines[3]
    rewrite(ten, lines)
    line, reason = broken_at(ten)
    assert line == 4 and reason.startswith("prev hash does not match")


def test_truncated_last_line_fails_there(ten: Path) -> None:
    data = ten.read_bytes()
    ten.write_bytes(data[:-30])
    assert broken_at(ten) == (10, "incomplete last line (no newline)")


def test_removed_head_fails_at_line_one(ten: Path) -> None:
    rewrite(ten, raw_lines(ten)[2:])
    line, reason = broken_at(ten)
    assert line == 1 and "no start marker" in reason


def test_forged_seq_is_a_gap(ten: Path) -> None:
    # A well-formed line whose prev is right but whose seq skips ahead.
    lines = raw_lines(ten)
    last = json.loads(lines[-1])
    head = json.dumps(
        {"time": last["time"], "seq": int(last["seq"]) + 2, "prev": last["hash"], "x": 1},
        separators=(",", ":"),
    ).encode()[:-1]
    lines.append(head + b',"hash":"' + hashlib.sha256(head).hexdigest().encode() + b'"}\n')
    rewrite(ten, lines)
    assert broken_at(ten) == (11, "seq gap: expected 11, found 12")


def test_garbage_line_is_reported(ten: Path) -> None:
    lines = raw_lines(ten)
    lines.insert(2, b"not json at all\n")
    rewrite(ten, lines)
    assert broken_at(ten) == (3, "malformed line (no trailing hash field)")


# --- rotation and pruning ---------------------------------------------------------------


def test_rotation_continues_the_chain_across_files(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=3000, clock=clock)
    for i in range(60):
        clock.now += 0.05  # several rotations within one second: .1, .2 suffixes
        log.record(event(i))
    log.close()
    files = audit_files(tmp_path)
    assert len(files) > 3 and files[-1].name == AUDIT_FILE_NAME
    assert any(re.search(r"\.\d{8}T\d{6}Z\.\d+\Z", f.name) for f in files)
    assert all(f.stat().st_size <= 3000 for f in files)
    for before, after in itertools.pairwise(files):
        first = parsed(after)[0]
        assert first["start"] == "rotated"
        assert first["prev"] == prefix_hash(raw_lines(before)[-1])
    seqs = [e["seq"] for f in files for e in parsed(f)]
    assert seqs == list(range(1, 61))
    assert str(verify(tmp_path)) == f"OK: 60 lines in {len(files)} files"


def test_rotated_names_stay_in_chain_order_when_the_clock_steps_back(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=1500, clock=clock)
    for i in range(30):
        clock.now += -50.0 if i == 10 else 1.0
        log.record(event(i))
    log.close()
    assert verify(tmp_path).ok and verify(tmp_path).lines == 30


def test_deleted_middle_file_is_detected(tmp_path: Path) -> None:
    write(tmp_path, 40, max_bytes=3000, clock=Clock())
    files = audit_files(tmp_path)
    files[1].unlink()
    result = verify(tmp_path)
    assert not result.ok and result.broken_file == files[2] and result.broken_line == 1


def test_emptied_rotated_file_is_detected(tmp_path: Path) -> None:
    write(tmp_path, 40, max_bytes=3000, clock=Clock())
    files = audit_files(tmp_path)
    files[1].write_bytes(b"")
    result = verify(tmp_path)
    assert (result.ok, result.broken_file, result.reason) == (False, files[1], "empty rotated file")


def test_pruning_keeps_a_verifiable_tail(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=3000, max_age_days=2, clock=clock)
    for i in range(30):
        log.record(event(i))
    old = set(audit_files(tmp_path)[:-1])
    clock.now += 3 * DAY
    for i in range(30, 60):
        log.record(event(i))
    log.close()
    remaining = set(audit_files(tmp_path))
    assert old and not old & remaining
    result = verify(tmp_path)
    assert result.ok and result.first_seq is not None and result.first_seq > 1
    assert result.lines == 60 - result.first_seq + 1


def test_open_prunes_old_files(tmp_path: Path) -> None:
    write(tmp_path, 40, max_bytes=3000, clock=Clock())
    before = len(audit_files(tmp_path))
    log = AuditLog(tmp_path, max_bytes=3000, max_age_days=1, clock=Clock(T0 + 2 * DAY))
    log.close()
    assert before > 1 and audit_files(tmp_path) == [tmp_path / AUDIT_FILE_NAME]
    assert verify(tmp_path).ok


def test_other_writer_rotating_is_noticed(tmp_path: Path) -> None:
    a = AuditLog(tmp_path, max_bytes=2500, clock=Clock())
    b = AuditLog(tmp_path, max_bytes=2500, clock=Clock())
    a.record(event(0))
    for i in range(1, 15):
        b.record(event(i))  # b rotates; a still holds the old inode
    a.record(event(15))
    a.close()
    b.close()
    assert len(audit_files(tmp_path)) > 1
    last = parsed(tmp_path / AUDIT_FILE_NAME)[-1]
    assert last["request_id"] == "req-15"
    assert verify(tmp_path).lines == 16


def test_deleted_live_file_leaves_a_visible_gap(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, max_bytes=3000, clock=Clock())
    for i in range(12):
        log.record(event(i))
    files = audit_files(tmp_path)
    assert len(files) == 2
    files[-1].unlink()  # someone removes the lines written since the last rotation
    log.record(event(12))
    log.close()
    result = verify(tmp_path)
    assert (result.ok, result.broken_file, result.broken_line) == (False, files[-1], 1)
    assert str(result.reason).startswith("prev hash does not match")


def test_torn_tail_is_cut_off_and_the_same_chain_continues(tmp_path: Path) -> None:
    """A half-written line (a crash or a full disk mid-write) was never a whole record, so no
    request went on with it: it is removed and the chain continues, verifying end to end."""
    write(tmp_path, 5, clock=Clock())
    live = tmp_path / AUDIT_FILE_NAME
    with live.open("ab") as fh:
        fh.write(b'{"time":"2026-11-25T17:13:00.000Z","seq":6,"pr')  # a crash mid-write
    write(tmp_path, 3, clock=Clock(T0 + 1))
    assert audit_files(tmp_path) == [live]
    lines = parsed(live)
    assert [x["seq"] for x in lines] == list(range(1, 9))
    assert "start" not in lines[5]
    result = verify(tmp_path)
    assert result.ok and result.lines == 8, result


# --- what is refused --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["secret_key", "SecretAccessKey", "X-Amz-Security-Token", "password", "signature", "key"],
)
def test_secret_looking_keys_are_refused(tmp_path: Path, name: str) -> None:
    with AuditLog(tmp_path) as log:
        with pytest.raises(ValueError, match="looks like a credential"):
            log.record({"request_id": "r", name: "abc"})
        log.record({"request_id": "ok"})
    assert [e["request_id"] for e in parsed(tmp_path / AUDIT_FILE_NAME)] == ["ok"]


@pytest.mark.parametrize("name", ["time", "seq", "prev", "start", "hash"])
def test_reserved_keys_are_refused(tmp_path: Path, name: str) -> None:
    with AuditLog(tmp_path) as log, pytest.raises(ValueError, match="reserved for the chain"):
        log.record({name: 1})
    assert (tmp_path / AUDIT_FILE_NAME).read_bytes() == b""


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "ü", "a\nb", 7])
def test_malformed_keys_are_refused(tmp_path: Path, name: object) -> None:
    with AuditLog(tmp_path) as log, pytest.raises(ValueError, match="field names must be"):
        log.record({name: 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "value",
    [b"raw", bytearray(b"raw"), memoryview(b"raw"), Secret("hunter2hunter2"), {"a": 1}, object()],
)
def test_bytes_secrets_and_objects_are_refused(tmp_path: Path, value: object) -> None:
    with AuditLog(tmp_path) as log, pytest.raises(TypeError) as info:
        log.record({"operation": value})
    assert "hunter2" not in str(info.value) and "raw" not in str(info.value)
    assert (tmp_path / AUDIT_FILE_NAME).read_bytes() == b""


def test_other_value_checks(tmp_path: Path) -> None:
    with AuditLog(tmp_path) as log:
        with pytest.raises(ValueError, match="must be finite"):
            log.record({"latency_ms": float("nan")})
        with pytest.raises(ValueError, match="'allow' or 'deny'"):
            log.record({"decision": "maybe"})
        with pytest.raises(ValueError, match="too large"):
            log.record({"note": "x" * 70_000})
        with pytest.raises(TypeError, match="mapping"):
            log.record(["not", "a", "dict"])  # type: ignore[arg-type]
        log.record({"hosts": ["a", "b"], "ok": True, "n": None})
    assert parsed(tmp_path / AUDIT_FILE_NAME)[0]["hosts"] == ["a", "b"]


def test_registered_secret_values_are_masked(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI-audit-test-secret"
    logscan.register(secret)
    logscan.log_dir(tmp_path)
    registry = SecretRegistry()
    registry.register(secret)
    with AuditLog(tmp_path, registry=registry) as log:
        log.record({"error_code": f"upstream said {secret}", "hosts": [secret]})
        hex_secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
        logscan.register(hex_secret)
        registry.register(hex_secret)
        with pytest.raises(ValueError, match="field name holds a configured secret") as info:
            log.record({hex_secret: 1})
        assert hex_secret not in str(info.value)
    text = (tmp_path / AUDIT_FILE_NAME).read_text()
    assert secret not in text and "upstream said ***" in text
    assert hex_secret not in text
    assert verify(tmp_path).ok


def test_closed_log_refuses(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record(event(0))


# --- configuration ----------------------------------------------------------------------


def test_open_from_config(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "audit"
    log = AuditLog.open(AuditConfig(output=str(out), enabled=True, max_size=0, max_age=0))
    assert log.enabled and log.max_bytes == 100 * 1024 * 1024 and log.max_age_days == 90
    log.record(event(1))
    log.close()
    assert verify(out).lines == 1
    assert oct(out.stat().st_mode & 0o777) == "0o750"
    assert oct((out / AUDIT_FILE_NAME).stat().st_mode & 0o777) == "0o640"


def test_disabled_config_writes_nothing_but_still_checks(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    log = AuditLog.open(AuditConfig(output=str(out), enabled=False))
    assert not log.enabled and log.path is None
    log.record(event(1))
    with pytest.raises(ValueError, match="looks like a credential"):
        log.record({"token": "x"})
    log.close()
    assert not out.exists()


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Audit\.Output: a directory is required"):
        AuditLog.open(AuditConfig(output=" ", enabled=True))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"Audit\.Output: cannot write in"):
        AuditLog.open(AuditConfig(output=str(blocker / "audit"), enabled=True))
    with pytest.raises(ValueError, match="must be positive"):
        AuditLog(tmp_path, max_bytes=0)


def test_verify_single_rotated_file_and_missing_path(tmp_path: Path) -> None:
    write(tmp_path, 40, max_bytes=3000, clock=Clock())
    middle = audit_files(tmp_path)[1]
    result = verify(middle)
    assert result.ok and result.files == 1 and result.first_seq is not None
    assert result.first_seq > 1
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(verify(empty)) == "OK: 0 lines in 0 files"
    assert os.listdir(empty) == []


# --- several processes ------------------------------------------------------------------

WORKER = """
import os, sys, time
from pathlib import Path
from keybroker.audit.trail import AuditLog
audit, sync, p, n, max_bytes = sys.argv[1:]
log = AuditLog(audit, max_bytes=int(max_bytes))
(Path(sync) / f"ready-{p}").touch()
while not (Path(sync) / "go").exists():  # start together, so the writers really contend
    time.sleep(0.001)
for i in range(int(n)):
    log.record({"p": p, "i": i, "decision": "allow", "pad": "q" * 200})
log.close()
"""


@pytest.mark.parametrize("max_bytes", [100 * 1024 * 1024, 64 * 1024])
def test_worker_processes_build_one_chain(tmp_path: Path, max_bytes: int) -> None:
    audit, sync = tmp_path / "audit", tmp_path / "sync"
    audit.mkdir()
    sync.mkdir()
    n = 300
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(audit), str(sync), str(p), str(n), str(max_bytes)]
        )
        for p in range(3)
    ]
    deadline = time.monotonic() + 30
    while len(list(sync.iterdir())) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    (sync / "go").touch()
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    result = verify(audit)
    assert result.ok and result.lines == 900 and result.first_seq == 1, result
    files = audit_files(audit)
    assert (len(files) == 1) == (max_bytes > 1024 * 1024)
    entries = [e for f in files for e in parsed(f)]
    seen = sorted((str(e["p"]), int(str(e["i"]))) for e in entries)
    assert seen == sorted((str(p), i) for p in range(3) for i in range(n))
    # Each writer's own lines appear in its own order.
    for p in map(str, range(3)):
        assert [e["i"] for e in entries if e["p"] == p] == list(range(n))


# --- the proxy's event ------------------------------------------------------------------


def test_request_event_from_a_context(tmp_path: Path) -> None:
    ctx = RequestContext(
        request_id="rid-1",
        mode="native",
        method="POST",
        remote="198.51.100.4",
        account="acct",
        vendor="aws",
        service="s3",
        region="us-east-1",
        action="PutObject",
        # a signature no hex digest can contain (the lines carry hashes in hex)
        upstream_url="https://user:pw@bucket.s3.amazonaws.com:8443/key?X-Amz-Signature=sigxyz",
        status=200,
        started=100.0,
    )
    allowed = request_event(ctx, now=100.25)
    assert allowed["upstream_host"] == "bucket.s3.amazonaws.com:8443"
    assert (allowed["decision"], allowed["latency_ms"], allowed["source_ip"]) == (
        "allow",
        250.0,
        "198.51.100.4",
    )
    ctx.error_code, ctx.status, ctx.upstream_url = "Proxy.Forbidden", 403, "http://[::1]/x"
    denied = request_event(ctx, now=101.0)
    assert (denied["decision"], denied["error_code"], denied["upstream_host"]) == (
        "deny",
        "Proxy.Forbidden",
        "[::1]",
    )
    ctx.upstream_url = "http://bad:port/"
    assert request_event(ctx)["upstream_host"] is None
    with AuditLog(tmp_path) as log:
        log.record(allowed)
        log.record(denied)
    text = (tmp_path / AUDIT_FILE_NAME).read_text()
    assert "sigxyz" not in text and "pw" not in text and "/key" not in text
    assert verify(tmp_path).lines == 2


def test_forked_worker_shares_the_log_opened_before_the_fork(tmp_path: Path) -> None:
    # Pre-fork servers open the log, then fork: parent and child hold one descriptor.
    log = AuditLog(tmp_path, max_bytes=8000)
    log.record(event(0, p="parent"))
    holder = threading.Thread(target=log._lock.acquire)  # a lock held at fork time
    holder.start()
    holder.join()
    pid = os.fork()
    if pid == 0:  # the child: must not hang on the inherited (held) lock
        code = 1
        try:
            for i in range(50):
                log.record(event(i, p="child"))
            code = 0
        finally:
            os._exit(code)
    log._lock.release()
    for i in range(1, 51):
        log.record(event(i, p="parent"))
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    log.close()
    assert done[0] == pid, "the child hung on the lock it inherited"
    assert os.waitstatus_to_exitcode(done[1]) == 0
    result = verify(tmp_path)
    assert result.ok and result.lines == 101 and result.files > 1, result
