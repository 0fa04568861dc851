"""``keybroker audit verify``: exit codes and the exact one-line reports."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import AUDIT_FILE_NAME
from keybroker.cli.audit import UNKEYED_NOTE, add_audit_parser, cmd_verify, main


def make_log(directory: Path, n: int, max_bytes: int = 100 * 1024 * 1024) -> Path:
    with AuditLog(directory, max_bytes=max_bytes) as log:
        for i in range(n):
            log.record({"request_id": f"r{i}", "decision": "allow", "status": 200})
    return directory


def test_ok_through_the_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_log(tmp_path, 30, max_bytes=2000)
    files = len(list(tmp_path.iterdir()))
    assert cmd_verify(argparse.Namespace(path=str(tmp_path))) == 0
    out, err = capsys.readouterr()
    assert out == f"OK: 30 lines in {files} files\n{UNKEYED_NOTE}\n" and err == ""
    assert files > 1


def test_tampered_reports_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = make_log(tmp_path, 8) / AUDIT_FILE_NAME
    lines = live.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"allow"', b'"deny"')
    live.write_bytes(b"".join(lines))
    assert main(["audit", "verify", str(tmp_path)]) == 1
    out, _ = capsys.readouterr()
    assert out == f"tampered: {live}:3: line hash mismatch (the line was altered)\n"


def test_single_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = make_log(tmp_path, 4) / AUDIT_FILE_NAME
    assert main(["audit", "verify", str(live)]) == 0
    assert capsys.readouterr().out == f"OK: 4 lines in 1 files\n{UNKEYED_NOTE}\n"


def test_pruned_start_is_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_log(tmp_path, 30, max_bytes=2000)
    oldest = sorted(p for p in tmp_path.iterdir() if p.name != AUDIT_FILE_NAME)[0]
    first_kept = len(oldest.read_bytes().splitlines()) + 1
    oldest.unlink()
    assert main(["audit", "verify", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"OK: {30 - first_kept + 1} lines in ")
    assert lines[1] == f"note: the retained chain starts at seq {first_kept} (older files pruned)"


def test_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["audit", "verify", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"keybroker audit verify: {missing}: no such file or directory\n"


def test_unreadable_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    too_long = tmp_path / ("x" * 300)
    assert main(["audit", "verify", str(too_long)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"keybroker audit verify: {too_long}: cannot read: File name too long\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = make_log(tmp_path, 2) / AUDIT_FILE_NAME
    live.chmod(0)
    assert main(["audit", "verify", str(live)]) == 2
    assert capsys.readouterr().err.endswith(": cannot read: Permission denied\n")


def test_parser_wiring_in_a_host_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="keybroker")
    sub = parser.add_subparsers(dest="command", required=True)
    add_audit_parser(sub)
    args = parser.parse_args(["audit", "verify", str(make_log(tmp_path, 2))])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == f"OK: 2 lines in 1 files\n{UNKEYED_NOTE}\n"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["audit"])
    assert exc.value.code == 2


def test_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    live = make_log(tmp_path, 3) / AUDIT_FILE_NAME
    live.write_bytes(live.read_bytes()[:-5])
    script = "import sys; from keybroker.cli.audit import main; sys.exit(main(sys.argv[1:]))"
    runs = {
        arg: subprocess.run(
            [sys.executable, "-c", script, "audit", "verify", arg],
            capture_output=True,
            text=True,
            timeout=30,
        )
        for arg in (str(tmp_path), str(tmp_path / "gone"))
    }
    tampered, missing = runs[str(tmp_path)], runs[str(tmp_path / "gone")]
    assert (tampered.returncode, missing.returncode) == (1, 2)
    assert tampered.stdout == f"tampered: {live}:3: incomplete last line (no newline)\n"
    assert "Traceback" not in tampered.stderr + missing.stderr
