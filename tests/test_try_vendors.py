"""``keybroker try`` end to end for every vendor but AWS (tests/test_first_hour.py runs it
against moto): ``init`` an account, point its ``Upstream`` at a server that checks signatures
with the vendor's own algorithm or SDK and the *real* credential, ``serve``, then ``try`` in
native and key-proxy mode — the upstream accepts the request only if it arrives re-signed with
the real key."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from keybroker.credentials import Credential
from keybroker.secret import Secret
from tests import logscan
from tests.procs import KEYBROKER, run_keybroker
from tests.servers import free_port, port_open, wait_until
from tests.signers.test_samples import UPSTREAMS

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

AK, SK = "AKIDREALTRYVENDOR001", "real-secret-for-try-0123456789abcdefXYZ"
AKAMAI = ("akab-real-client-token-1", "akab-real-access-token-1", "real-client-secret-0123456789")


def _real(vendor: str) -> tuple[Credential, str]:
    """The real credential and the stdin line ``init --non-interactive`` reads it from."""
    if vendor == "akamai":
        token, access, secret = AKAMAI
        cred = Credential(token, Secret(""), Secret(access), Secret(token), Secret(secret))
        return cred, " ".join(AKAMAI)
    if vendor == "baishan":
        return Credential("", Secret(SK)), SK
    return Credential(AK, Secret(SK)), f"{AK} {SK}"


@pytest.mark.parametrize("vendor", sorted(UPSTREAMS))
def test_try_arrives_resigned_with_the_real_key(tmp_path: Path, vendor: str) -> None:
    cred, line = _real(vendor)
    logscan.register(*cred.secrets())
    init = run_keybroker(
        "init",
        str(tmp_path / "kb"),
        "--non-interactive",
        "--account",
        f"demo:{vendor}",
        stdin=line + "\n",
    )
    assert init.returncode == 0, init.stderr
    logscan.log_dir(tmp_path / "kb" / "log")
    config = tmp_path / "kb" / "config.yml"
    port = free_port()
    with UPSTREAMS[vendor](cred) as upstream:
        text = config.read_text()
        vendor_line = f'    Vendor: "{vendor}"\n'
        assert vendor_line in text, text
        text = text.replace(vendor_line, f'{vendor_line}    Upstream: "{upstream}"\n')
        config.write_text(text.replace("127.0.0.1:3888", f"127.0.0.1:{port}"))
        proc = subprocess.Popen([*KEYBROKER, "serve", "--config", str(config)])
        try:
            wait_until(port_open(port), what="keybroker serve")
            accepted: list[object] = upstream.echoes  # type: ignore[attr-defined]
            for mode in ("native", "keyproxy"):
                before = len(accepted)
                r = run_keybroker(
                    "try", "--config", str(config), "--account", "demo", "--mode", mode
                )
                out = r.stdout + r.stderr
                assert r.returncode == 0, out
                assert "<- 200 OK" in r.stdout and "answered by the vendor" in r.stdout, out
                # Tencent's verifier answers a wrong signature with 200 and an Error
                assert "Signature" not in r.stdout.split("answered by the vendor")[1], out
                assert len(accepted) == before + 1, out  # the verifier accepted one request
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
