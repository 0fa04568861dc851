"""``keybroker serve`` with a key service whose KMS cannot be set up: one clear message and
exit 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.servers import free_port


def test_serve_reports_a_kms_that_cannot_be_set_up(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        f'Http: {{Address: "127.0.0.1:{free_port()}", Workers: 1}}\n'
        'Log: {Output: "-"}\n'
        "KeyService:\n"
        "  Enabled: true\n"
        f'  KMS: "kms://local?keyFile={tmp_path}/missing-kek.bin"\n'
        '  Storage: "storage://memory"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "keybroker", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot start" in done.stderr
    assert "KeyService.KMS: kms://local: cannot read keyFile" in done.stderr
    assert "Traceback" not in done.stderr
