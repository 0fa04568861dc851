"""Signed checkpoints and ``keybroker audit verify --public-key``: the tamper matrix.

A keyed log (several rotated files, interval, rotation and shutdown checkpoints, then a few
lines after the last checkpoint) verifies; each attack an attacker with write access to the
directory can make is detected: edit a line; drop lines and recompute every hash; delete the
newest file, the newest two, the oldest; truncate the tail before the last checkpoint; reorder
two lines; a checkpoint signed by another key; the checkpoint file deleted or a checkpoint
removed.  What cannot be detected — removing lines after the last checkpoint — is reported as
unproven.  Hypothesis draws which lines go, which two swap and which field changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.audit.checkpoint import CHECKPOINT_FILE_NAME, CHECKPOINT_GENESIS, seal_checkpoint
from keybroker.audit.files import seal_line
from keybroker.audit.keys import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    AuditSigner,
    load_public_key,
    load_signer,
)
from keybroker.audit.proof import ProofResult, verify_keyed
from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import AUDIT_FILE_NAME, audit_files

T0 = 1_795_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def event(i: int) -> dict[str, object]:
    account = "victim" if i % 5 == 0 else "acct"
    return {"request_id": f"r{i}", "account": account, "decision": "allow", "status": 200}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key pair, made by ``keybroker audit init`` (a second init refuses to replace it)."""
    folder = tmp_path_factory.mktemp("keys")
    cmd = [sys.executable, "-m", "keybroker", "audit", "init", "--dir", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (folder / PRIVATE_KEY_NAME).stat().st_mode & 0o777 == 0o600
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    return folder


@pytest.fixture(scope="module")
def pristine(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audit")
    clock = Clock()
    signer = load_signer(str(keys / PRIVATE_KEY_NAME))
    log = AuditLog(folder, max_bytes=2500, clock=clock, signer=signer, checkpoint_interval=4)
    for i in range(60):
        clock.now += 1
        log.record(event(i))
    log.close()  # the shutdown checkpoint
    clock.now += 1
    tail = AuditLog(folder, max_bytes=2500, clock=clock, signer=signer, checkpoint_interval=999)
    for i in range(60, 63):
        tail.record(event(i))  # after the last checkpoint: the process then dies
    return folder


def copy(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(pristine, target)
    return target


def check(folder: Path, keys: Path) -> ProofResult:
    return verify_keyed(folder, load_public_key(keys / PUBLIC_KEY_NAME))


def rewrite(folder: Path, change: Callable[[list[dict[str, object]]], None]) -> None:
    """Apply ``change`` to the list of line bodies of every file, then recompute every seq,
    prev, start marker and hash so the plain chain is sound again (what an attacker without
    the key does); each file keeps its number of lines, the newest takes the rest."""
    files = audit_files(folder)
    bodies = [[json.loads(raw) for raw in p.read_bytes().splitlines()] for p in files]
    starts = [lines[0].get("start") if lines else None for lines in bodies]
    sizes = [len(lines) for lines in bodies]
    items = [b for lines in bodies for b in lines]
    prev, seq = str(items[0]["prev"]), int(str(items[0]["seq"]))
    change(items)
    heads = {sum(sizes[:n]): start for n, start in enumerate(starts)}
    sealed: list[bytes] = []
    for index, body in enumerate(items):
        rest = {k: v for k, v in body.items() if k not in ("time", "seq", "prev", "start", "hash")}
        fresh: dict[str, object] = {"time": body["time"], "seq": seq, "prev": prev}
        if heads.get(index):
            fresh["start"] = heads[index]
        fresh.update(rest)
        line, prev = seal_line(fresh)
        sealed.append(line)
        seq += 1
    start = 0
    for path, size in zip(files, sizes, strict=True):
        size = size if path != files[-1] else len(sealed) - start
        path.write_bytes(b"".join(sealed[start : start + size]))
        start += size


@pytest.mark.slow
def test_an_untouched_log_is_proven_with_its_unproven_tail(pristine: Path, keys: Path) -> None:
    result = check(pristine, keys)
    assert result.ok, result
    assert result.lines == 63 and result.files >= 3 and result.checkpoints >= 6, result
    assert result.last_proven_seq == 60 and result.unproven == 3
    assert result.first_time is not None and result.proven_until is not None
    reasons = [
        json.loads(x)["reason"] for x in (pristine / CHECKPOINT_FILE_NAME).read_text().splitlines()
    ]
    assert {"interval", "rotation", "shutdown"} <= set(reasons)
    out = subprocess.run(
        [sys.executable, "-m", "keybroker", "audit", "verify", "--public-key",
         str(keys / PUBLIC_KEY_NAME), str(pristine)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "complete and unchanged from" in out.stdout and "unproven: 3 lines" in out.stdout


def test_removing_only_the_unproven_tail_is_the_documented_limit(
    pristine: Path, keys: Path, tmp_path: Path
) -> None:
    folder = copy(pristine, tmp_path)
    live = folder / AUDIT_FILE_NAME
    live.write_bytes(b"".join(live.read_bytes().splitlines(keepends=True)[:-3]))
    result = check(folder, keys)
    assert result.ok and result.unproven == 0 and result.last_proven_seq == 60


def _edit_line(folder: Path) -> None:
    path = audit_files(folder)[1]
    raw = path.read_bytes().splitlines(keepends=True)
    raw[1] = raw[1].replace(b'"status":200', b'"status":403')
    path.write_bytes(b"".join(raw))


def _drop_victim(folder: Path) -> None:
    rewrite(folder, lambda items: items.__setitem__(slice(None), [
        b for b in items if b.get("account") != "victim" or int(str(b["seq"])) > 40
    ]))  # fmt: skip


def _delete_newest(folder: Path) -> None:
    (folder / AUDIT_FILE_NAME).unlink()


def _delete_newest_two(folder: Path) -> None:
    files = audit_files(folder)
    files[-1].unlink()
    files[-2].unlink()


def _delete_oldest(folder: Path) -> None:
    audit_files(folder)[0].unlink()


def _truncate_before_last_checkpoint(folder: Path) -> None:
    """Cut every line from seq 58 on (the last checkpoint signed seq 60); a rotated file left
    empty goes too."""
    for path in audit_files(folder):
        lines = path.read_bytes().splitlines(keepends=True)
        keep = [x for x in lines if int(json.loads(x)["seq"]) < 58]
        if keep or path.name == AUDIT_FILE_NAME:
            path.write_bytes(b"".join(keep))
        else:
            path.unlink()


def _reorder_two(folder: Path) -> None:
    path = audit_files(folder)[1]
    raw = path.read_bytes().splitlines(keepends=True)
    raw[1], raw[2] = raw[2], raw[1]
    path.write_bytes(b"".join(raw))


def _resign_with(folder: Path, only_last: bool) -> None:
    """Re-sign checkpoints with another key (and, for the last, claim a shorter log)."""
    other = AuditSigner(Ed25519PrivateKey.generate())
    path = folder / CHECKPOINT_FILE_NAME
    bodies = [json.loads(x) for x in path.read_text().splitlines()]
    out, prev = [], CHECKPOINT_GENESIS
    for n, body in enumerate(bodies):
        raw = path.read_bytes().splitlines(keepends=True)[n]
        if only_last and n < len(bodies) - 1:
            out.append(raw)
            prev = hashlib.sha256(raw[:-1]).hexdigest()
            continue
        body.pop("sig")
        body["key"], body["prev"] = other.key_id, prev
        line = seal_checkpoint(body, other)
        out.append(line)
        prev = hashlib.sha256(line[:-1]).hexdigest()
    path.write_bytes(b"".join(out))


def _delete_checkpoints(folder: Path) -> None:
    (folder / CHECKPOINT_FILE_NAME).unlink()


def _remove_a_checkpoint(folder: Path) -> None:
    path = folder / CHECKPOINT_FILE_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[2]
    path.write_bytes(b"".join(lines))


ATTACKS: dict[str, tuple[Callable[[Path], None], str]] = {
    "edit a line": (_edit_line, "line hash mismatch"),
    "drop lines and recompute the hashes": (_drop_victim, "signed (edited or rewritten)"),
    "delete the newest file": (_delete_newest, "missing: deleted"),
    "delete the newest two files": (_delete_newest_two, "missing: deleted"),
    "delete the oldest file": (_delete_oldest, "missing: deleted"),
    "truncate the tail before the last checkpoint": (
        _truncate_before_last_checkpoint,
        "lines removed (truncated)",
    ),
    "reorder two lines": (_reorder_two, "prev hash does not match"),
    "all checkpoints signed by another key": (
        lambda f: _resign_with(f, only_last=False),
        "signature does not verify",
    ),
    "last checkpoint replaced, signed by another key": (
        lambda f: _resign_with(f, only_last=True),
        "signature does not verify",
    ),
    "checkpoint file deleted": (_delete_checkpoints, "no signed checkpoint"),
    "a checkpoint removed": (_remove_a_checkpoint, "checkpoint chain broken"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_tamper_matrix(attack: str, pristine: Path, keys: Path, tmp_path: Path) -> None:
    folder = copy(pristine, tmp_path)
    tamper, why = ATTACKS[attack]
    tamper(folder)
    result = check(folder, keys)
    assert not result.ok, f"{attack}: not detected"
    assert why in str(result.reason), result


def test_the_unkeyed_chain_alone_misses_what_checkpoints_catch(
    pristine: Path, keys: Path, tmp_path: Path
) -> None:
    """Why the key matters: the plain chain accepts a recomputed chain and a deleted newest
    file; the keyed verify does not."""
    from keybroker.audit.verify import verify

    for attack in (_drop_victim, _delete_newest, _delete_oldest):
        folder = copy(pristine, tmp_path)
        attack(folder)
        assert verify(folder).ok
        assert not check(folder, keys).ok


LINES = st.integers(min_value=1, max_value=60)
FIXTURES = HealthCheck.function_scoped_fixture


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drop=st.sets(LINES, min_size=1, max_size=8))
def test_any_proven_lines_dropped_and_rechained_are_detected(
    drop: set[int], pristine: Path, keys: Path, tmp_path: Path
) -> None:
    folder = copy(pristine, tmp_path)
    rewrite(folder, lambda items: items.__setitem__(
        slice(None), [b for b in items if int(str(b["seq"])) not in drop]
    ))  # fmt: skip
    assert not check(folder, keys).ok


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=LINES, b=LINES, field=st.sampled_from(["account", "status", "decision", "request_id"]))
def test_any_swap_or_field_change_rechained_is_detected(
    a: int, b: int, field: str, pristine: Path, keys: Path, tmp_path: Path
) -> None:
    folder = copy(pristine, tmp_path)

    def change(items: list[dict[str, object]]) -> None:
        i, j = a - 1, b - 1
        if i != j:
            items[i], items[j] = items[j], items[i]
        else:
            items[i][field] = "changed"

    rewrite(folder, change)
    assert not check(folder, keys).ok


def test_a_sealed_reference_without_a_seal_section_is_a_config_error(tmp_path: Path) -> None:
    from keybroker.errors import ConfigError

    key = tmp_path / "sealed.key"
    key.write_text("${sealed:kb1.AAAA}\n")
    with pytest.raises(ConfigError, match="sealed"):
        load_signer(str(key))


WORKER = """
import sys, time
from pathlib import Path
from keybroker.audit.trail import AuditLog
from keybroker.audit.keys import load_signer
audit, sync, key, p, n = sys.argv[1:]
log = AuditLog(audit, max_bytes=16 * 1024, signer=load_signer(key), checkpoint_interval=0.005)
(Path(sync) / f"ready-{p}").touch()
while not (Path(sync) / "go").exists():
    time.sleep(0.001)
for i in range(int(n)):
    log.record({"p": p, "i": i, "decision": "allow", "pad": "q" * 100})
log.close()
"""


def test_worker_processes_sign_one_chain_of_checkpoints(keys: Path, tmp_path: Path) -> None:
    """Three processes share a directory, rotating and checkpointing as they go: one chain of
    lines, one chain of checkpoints, proven complete."""
    audit, sync = tmp_path / "audit", tmp_path / "sync"
    audit.mkdir()
    sync.mkdir()
    key = str(keys / PRIVATE_KEY_NAME)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(audit), str(sync), key, str(p), "150"])
        for p in range(3)
    ]
    deadline = time.monotonic() + 30
    while len(list(sync.iterdir())) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    (sync / "go").touch()
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0]
    result = check(audit, keys)
    assert result.ok and result.lines == 450 and result.unproven == 0, result
    assert result.files > 2 and result.checkpoints > 10


def test_a_key_change_verifies_with_both_public_keys(keys: Path, tmp_path: Path) -> None:
    """The signing key replaced (same directory): the checkpoint chain goes on under the new
    key; the auditor names both public keys, one alone is not enough."""
    from keybroker.audit.keys import generate_key_pair

    generate_key_pair(tmp_path / "new")
    old_key, new_key = keys, tmp_path / "new"
    folder = tmp_path / "audit"
    folder.mkdir()
    for key_dir, first in ((old_key, 0), (new_key, 5)):
        with AuditLog(folder, signer=load_signer(str(key_dir / PRIVATE_KEY_NAME))) as log:
            for i in range(first, first + 5):
                log.record(event(i))
    publics = [load_public_key(d / PUBLIC_KEY_NAME) for d in (old_key, new_key)]
    assert not verify_keyed(folder, publics[0]).ok
    assert not verify_keyed(folder, publics[1]).ok
    both = verify_keyed(folder, publics)
    assert both.ok and both.lines == 10 and both.unproven == 0, both
    cmd = [sys.executable, "-m", "keybroker", "audit", "verify"]
    for d in (old_key, new_key):
        cmd += ["--public-key", str(d / PUBLIC_KEY_NAME)]
    done = subprocess.run([*cmd, str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("OK: 10 lines"), done.stdout


def test_pruned_files_are_no_deletion(keys: Path, tmp_path: Path) -> None:
    """Files pruned for age (MaxAge) before a checkpoint are not missing: the checkpoint after
    the pruning names the files and the first seq that remain."""
    clock, folder = Clock(), tmp_path / "audit"
    folder.mkdir()
    signer = load_signer(str(keys / PRIVATE_KEY_NAME))
    log = AuditLog(folder, max_bytes=1200, max_age_days=1, clock=clock, signer=signer)
    for i in range(20):
        log.record(event(i))
    clock.now += 2 * 86400  # two days later every rotated file is past MaxAge
    for i in range(20, 40):
        clock.now += 1
        log.record(event(i))
    log.close()
    result = check(folder, keys)
    assert result.ok and result.unproven == 0, result
    assert result.lines < 40  # the oldest lines went with their files
