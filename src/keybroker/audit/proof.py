"""What an auditor runs: prove an audit directory complete with the audit public key.

:func:`verify_keyed` checks the signed checkpoints (:mod:`keybroker.audit.checkpoint`) —
each signature, their own chain — then walks the audit chain (:func:`~keybroker.audit.verify.
verify`) and holds every line a checkpoint signed against it.  It fails on:

* an edited line, or lines removed, reordered or inserted (the chain, and a rewritten chain
  against the signed ``last_hash`` of the next checkpoint);
* a checkpoint that does not verify with the public key (forged, or signed by another key),
  or a checkpoint removed or reordered (their chain);
* a file the last checkpoint names that is gone (the newest, the oldest, any), or a chain
  that starts elsewhere than the last checkpoint says (lines cut off the oldest file);
* lines a checkpoint signed that are no longer there (a tail truncated before a checkpoint).

Lines after the last checkpoint are reported as *unproven*: an attacker with write access to
the directory can remove them (and only them) without a trace.  No checkpoint at all is a
failure: nothing would be proven.
"""

from __future__ import annotations

import hmac
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from keybroker.audit.checkpoint import (
    CHECKPOINT_FILE_NAME,
    Checkpoint,
    Keys,
    read_checkpoints,
)
from keybroker.audit.verify import AUDIT_FILE_NAME, VerifyResult, audit_files, verify

__all__ = ["ProofResult", "verify_keyed"]


@dataclass(frozen=True)
class ProofResult:
    """What :func:`verify_keyed` found (``chain``: the plain chain's result)."""

    ok: bool
    lines: int = 0
    files: int = 0
    checkpoints: int = 0
    unproven: int = 0
    first_time: str | None = None
    proven_until: str | None = None
    last_proven_seq: int | None = None
    broken_file: Path | None = None
    broken_line: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if not self.ok:
            where = f"{self.broken_file}:{self.broken_line}" if self.broken_line else ""
            where = where or str(self.broken_file)
            return f"tampered: {where}: {self.reason}"
        text = (
            f"OK: {self.lines} lines in {self.files} files; complete and unchanged from "
            f"{self.first_time} to {self.proven_until} (seq {self.last_proven_seq}), "
            f"{self.checkpoints} signed checkpoints"
        )
        if self.unproven:
            text += (
                f"\nunproven: {self.unproven} lines after the last checkpoint "
                f"(written after {self.proven_until}; their removal could not be detected)"
            )
        return text


@dataclass
class _Seen:
    by_seq: dict[int, list[Checkpoint]]
    matched: set[int] = field(default_factory=set)
    first_time: str | None = None
    last_seq: int = 0

    def line(self, file: Path, body: dict[str, object], digest: str) -> str | None:
        seq = body.get("seq")
        if not isinstance(seq, int):
            return "invalid field 'seq'"
        if self.first_time is None:
            self.first_time = str(body.get("time"))
        self.last_seq = seq
        for cp in self.by_seq.get(seq, ()):
            if not hmac.compare_digest(cp.last_hash, digest):
                return f"line differs from what checkpoint {cp.number} signed (edited or rewritten)"
            if cp.file not in (file.name, AUDIT_FILE_NAME):  # the live file rotates later
                return f"checkpoint {cp.number} signed this line in {cp.file} (files renamed?)"
            self.matched.add(cp.number)
        return None


def verify_keyed(directory: str | os.PathLike[str], public: Keys) -> ProofResult:
    """Prove ``directory`` complete and unchanged up to its last signed checkpoint, signed
    with ``public`` (one key, or each key the log was signed with over time).

    Raises :class:`FileNotFoundError`/:class:`NotADirectoryError` and :class:`OSError`."""
    folder = Path(directory)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a directory: {folder}")
    checkpoints = read_checkpoints(folder, public)
    cp_file = folder / CHECKPOINT_FILE_NAME
    if isinstance(checkpoints, tuple):
        return ProofResult(False, broken_file=cp_file, broken_line=checkpoints[0],
                           reason=checkpoints[1])  # fmt: skip
    if not checkpoints:
        reason = "no signed checkpoint: nothing is proven (checkpoint file missing or empty)"
        return ProofResult(False, broken_file=cp_file, reason=reason)
    by_seq: dict[int, list[Checkpoint]] = defaultdict(list)
    for cp in checkpoints:
        by_seq[cp.last_seq].append(cp)
    seen = _Seen(dict(by_seq))
    chain = verify(folder, on_line=seen.line)
    if not chain.ok:
        return _broken(chain.broken_file, chain.broken_line, chain.reason)
    problem = _against_last(folder, checkpoints[-1], chain) or _unmatched(
        folder, checkpoints, chain, seen
    )
    if problem is not None:
        return problem
    last = checkpoints[-1]
    return ProofResult(
        True,
        lines=chain.lines,
        files=chain.files,
        checkpoints=len(checkpoints),
        unproven=seen.last_seq - last.last_seq,
        first_time=seen.first_time,
        proven_until=last.time,
        last_proven_seq=last.last_seq,
    )


def _broken(file: Path | None, line: int | None, reason: str | None) -> ProofResult:
    return ProofResult(False, broken_file=file, broken_line=line, reason=reason)


def _against_last(folder: Path, last: Checkpoint, chain: VerifyResult) -> ProofResult | None:
    """The files and the start of the chain the last checkpoint names."""
    present = {path.name for path in audit_files(folder)}
    for name in last.files:
        if name not in present:
            why = f"named by the last checkpoint ({last.number}) but missing: deleted"
            return _broken(folder / name, None, why)
    if chain.first_seq != last.first_seq:
        why = (
            f"the chain starts at seq {chain.first_seq}, the last checkpoint ({last.number}) "
            f"says {last.first_seq}: lines or files removed at the start"
        )
        return _broken(folder / last.files[0], 1, why)
    return None


def _unmatched(
    folder: Path, checkpoints: list[Checkpoint], chain: VerifyResult, seen: _Seen
) -> ProofResult | None:
    """A checkpoint whose signed line is not in the retained chain: lines removed."""
    first = chain.first_seq or 1
    for cp in checkpoints:
        if cp.last_seq >= first and cp.number not in seen.matched:
            why = (
                f"checkpoint {cp.number} signed seq {cp.last_seq}, the chain ends at seq "
                f"{seen.last_seq}: lines removed (truncated)"
                if cp.last_seq > seen.last_seq
                else f"checkpoint {cp.number} signed seq {cp.last_seq}, which is missing"
            )
            return _broken(folder / cp.file, None, why)
    return None
