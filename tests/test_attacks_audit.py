"""Attacks on the audit trail's proof: what an attacker with write access to the audit
directory (not the signing key) tries, and what ``keybroker audit verify`` must say.

* crafted lines that crash the verifier (deeply nested JSON in an audit line or a
  checkpoint line): it must answer ``tampered``, never a traceback;
* the oldest audit files deleted while the proxy runs: the proxy's next checkpoint must not
  vouch for the shortened directory as if the files had been pruned for age.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keybroker.audit.checkpoint import CHECKPOINT_FILE_NAME
from keybroker.audit.keys import AuditSigner, parse_private_key
from keybroker.audit.proof import verify_keyed
from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import AUDIT_FILE_NAME, GENESIS, audit_files, verify

T0 = 1_795_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def event(i: int) -> dict[str, object]:
    return {"request_id": f"r{i}", "account": "acct", "decision": "allow", "status": 200}


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditSigner, Path]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    pub = tmp_path_factory.mktemp("keys") / "audit-signing.pub"
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return parse_private_key(pem), pub


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "keybroker", "audit", "verify", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


# --- crafted files that crash the verifier ----------------------------------------------

NESTED = b"[" * 20000 + b"]" * 20000


def _nested_audit_line() -> bytes:
    """A line whose hash is right and whose JSON nests deeper than the parser's recursion."""
    prefix = (
        b'{"time":"2026-01-01T00:00:00.000Z","seq":1,"prev":"'
        + GENESIS.encode()
        + b'","start":"genesis","x":'
        + NESTED
    )
    return prefix + b',"hash":"' + hashlib.sha256(prefix).hexdigest().encode() + b'"}\n'


def test_a_deeply_nested_audit_line_is_tampered_not_a_traceback(
    tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    (tmp_path / AUDIT_FILE_NAME).write_bytes(_nested_audit_line())
    result = verify(tmp_path)
    assert not result.ok and result.broken_line == 1, result
    done = run_verify(str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.startswith("tampered:"), done.stdout


def test_a_deeply_nested_checkpoint_is_tampered_not_a_traceback(
    tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    signer, pub = key_pair
    log = AuditLog(tmp_path, signer=signer)
    log.record(event(1))
    log.close()
    with (tmp_path / CHECKPOINT_FILE_NAME).open("ab") as fh:
        fh.write(b'{"x":' + NESTED + b',"sig":"AAAA"}\n')
    done = run_verify("--public-key", str(pub), str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.startswith("tampered:"), done.stdout


def test_the_writer_survives_a_deeply_nested_last_line(
    tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """The proxy starting on a directory whose last line was crafted goes on (a new chain,
    which verify reports), instead of failing to start."""
    (tmp_path / AUDIT_FILE_NAME).write_bytes(_nested_audit_line())
    log = AuditLog(tmp_path, signer=key_pair[0])
    log.record(event(1))
    log.close()
    assert not verify(tmp_path).ok


# --- deletions the proxy's next checkpoint would vouch for ------------------------------


def test_oldest_files_deleted_while_running_are_not_signed_away(
    tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """Deleting the oldest audit files (days old, well within MaxAge) while the proxy runs:
    the next checkpoint is signed by the proxy over whatever files it finds, so unless it
    notices files gone that it did not prune, the auditor's verify says OK from a later
    first record, and the deleted requests vanish without a trace."""
    signer, pub = key_pair
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=1500, clock=clock, signer=signer, max_age_days=90)
    for i in range(40):
        clock.now += 1
        log.record(event(i))
    log.checkpoint()
    files = audit_files(tmp_path)
    assert len(files) >= 4
    full = verify_keyed(tmp_path, _public(pub))
    assert full.ok, full
    files[0].unlink()  # the attacker's deletion: the oldest file, one day old
    files[1].unlink()
    for i in range(40, 45):
        clock.now += 1
        log.record(event(i))
    log.close()  # the shutdown checkpoint
    result = verify_keyed(tmp_path, _public(pub))
    assert not result.ok, result
    assert "deleted" in str(result.reason), result


def test_pruning_for_age_still_verifies(tmp_path: Path, key_pair: tuple[AuditSigner, Path]) -> None:
    signer, pub = key_pair
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=1500, clock=clock, signer=signer, max_age_days=1)
    for i in range(40):
        clock.now += 1
        log.record(event(i))
    log.checkpoint()
    clock.now += 3 * 86400
    for i in range(40, 80):
        clock.now += 1
        log.record(event(i))
    log.close()
    result = verify_keyed(tmp_path, _public(pub))
    assert result.ok and result.lines < 80, result


def _public(pub: Path):  # type: ignore[no-untyped-def]
    from keybroker.audit.keys import load_public_key

    return load_public_key(pub)


# --- file names that match the pattern but are no date ---------------------------------


def test_a_rotated_name_that_is_no_date_stops_neither_start_nor_rotation(
    tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """``audit.log.20261399T000000Z`` (month 99) matches the rotated-file pattern; pruning
    parsed its stamp as a date and raised ValueError: the proxy could not start on the
    directory, and every rotation failed the request that caused it (fail closed: 503)."""
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=600, clock=clock, signer=key_pair[0])
    log.record(event(0))
    (tmp_path / "audit.log.20261399T000000Z").write_bytes(b"")
    for i in range(1, 12):  # several rotations
        clock.now += 1
        log.record(event(i))
    log.close()
    again = AuditLog(tmp_path, max_bytes=600, clock=clock, signer=key_pair[0])
    again.record(event(12))
    again.close()
    result = verify_keyed(tmp_path, _public(key_pair[1]))
    assert not result.ok  # the planted file breaks the chain where it sorts: reported


# --- the refusal fold while the disk is full -------------------------------------------


class _FullDisk:
    enabled = True

    def record(self, event: object, *, durable: bool = True) -> None:
        raise OSError(28, "No space left on device")


def test_the_refusal_fold_stays_bounded_while_writes_fail() -> None:
    """A flood of refusals from ever new sources while the audit disk is full: each failed
    flush kept every key for the next one, on top of up to ``max_keys`` new ones, so the
    table (and the failed writes each flush attempts) grew by ``max_keys`` a second for as
    long as the disk stayed full.  Kept keys beyond the bound fold into ``other``, counts
    intact."""
    from keybroker.audit.refusals import RefusalFolder

    disk = _FullDisk()
    folder = RefusalFolder(lambda: disk, max_keys=16)  # type: ignore[arg-type,return-value]
    sent = 0
    for second in range(10):
        for n in range(64):
            folder.add(f"10.{second}.0.{n}", "bad request")
            sent += 1
        folder.flush()
    assert folder.pending <= 16 + 1, folder.pending
    assert sum(c.count for c in folder._pending.values()) == sent


# --- everything deleted while the proxy runs --------------------------------------------


def _wipe(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


@pytest.mark.parametrize("what", ["everything", "checkpoints"])
def test_a_directory_wiped_while_running_does_not_verify_as_complete(
    what: str, tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """Every audit file and the checkpoint file deleted while the proxy runs: the writer
    chains on from its real end (seq N+1) and began a new checkpoint file at checkpoint 1,
    which then signed the few new lines, and verify said "OK: complete and unchanged" over
    a log whose whole history was gone.  The writer knows the checkpoints it wrote: it goes
    on numbering from them, so the removal of the earlier ones stays visible."""
    signer, pub = key_pair
    clock = Clock()
    log = AuditLog(tmp_path, max_bytes=1500, clock=clock, signer=signer)
    for i in range(30):
        clock.now += 1
        log.record(event(i))
    log.checkpoint()
    if what == "everything":
        _wipe(tmp_path)
    else:
        (tmp_path / CHECKPOINT_FILE_NAME).unlink()
    for i in range(30, 35):
        clock.now += 1
        log.record(event(i))
    log.close()
    result = verify_keyed(tmp_path, _public(pub))
    assert not result.ok, result


# --- symlinks planted in the audit directory --------------------------------------------


@pytest.mark.parametrize("name", [AUDIT_FILE_NAME, CHECKPOINT_FILE_NAME])
def test_the_writer_never_appends_through_a_planted_symlink(
    name: str, tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """``audit.log`` (or ``audit.checkpoints``) replaced by a symlink to another file while
    the proxy runs: the writer followed it and appended its lines to whatever file the link
    named (with the proxy's rights), out of the audit directory.  It now refuses (ELOOP): a
    record that cannot be written fails the request closed."""
    folder = tmp_path / "audit"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"")  # empty: nothing of ours to misread first
    log = AuditLog(folder, signer=key_pair[0], checkpoint_interval=999)
    log.record(event(0))
    log.checkpoint()
    (folder / name).unlink()
    (folder / name).symlink_to(victim)
    with pytest.raises(OSError):
        log.record(event(1))
        log.checkpoint()
    log.close()
    assert victim.read_bytes() == b""


# --- lines cut off the live file while the proxy runs ----------------------------------


@pytest.mark.parametrize("keep", [10, 12])
def test_lines_cut_off_the_live_file_while_running_stay_visible(
    keep: int, tmp_path: Path, key_pair: tuple[AuditSigner, Path]
) -> None:
    """The newest lines cut off ``audit.log`` in place (same file, truncated) while the proxy
    runs: the writer took the shortened file's last line as the chain's end and went on
    from it, so its next checkpoint signed the log without them and verify said OK.  The
    writer knows where the chain ended: it goes on from there, and verify sees the gap."""
    signer, pub = key_pair
    log = AuditLog(tmp_path, signer=signer, checkpoint_interval=999)
    for i in range(10):
        log.record(event(i))
    log.checkpoint()
    for i in range(10, 15):
        log.record(event(i))  # after the checkpoint: the lines the attacker removes
    live = tmp_path / AUDIT_FILE_NAME
    lines = live.read_bytes().splitlines(keepends=True)
    with live.open("r+b") as fh:  # in place: the same inode, as `truncate -s` does
        fh.truncate(sum(len(x) for x in lines[:keep]))  # the checkpoint signed line 10
    for i in range(15, 18):
        log.record(event(i))
    log.close()
    result = verify_keyed(tmp_path, _public(pub))
    assert not result.ok, result
