"""The audit settings: a sealed signing key, the stdout mirror, and bad values refused."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from keybroker.audit.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, load_public_key
from keybroker.audit.mirror import open_mirror
from keybroker.audit.proof import verify_keyed
from keybroker.audit.trail import AuditLog
from keybroker.cli.audit import main
from keybroker.cli.seal import create_master_secret
from keybroker.config.loader import load, loads
from keybroker.errors import ConfigError

ENDPOINT = """Endpoints:
  - CloudAccountName: a
    Vendor: aws
    Credentials:
      Proxy: {AccessKey: AKIDPROXYSETTINGS001, SecretKey: proxysecretsettings0001}
      Real: {AccessKey: AKIAREALSETTINGS0001, SecretKey: realsecretsettings00001}
"""


def test_a_sealed_signing_key_is_opened_with_the_seal_section(tmp_path: Path) -> None:
    uri = create_master_secret(tmp_path / "master")
    cfg = tmp_path / "config.yml"
    seal = f"Seal:\n  KMS: {json.dumps(uri)}\n"
    cfg.write_text(seal + ENDPOINT)
    keys = tmp_path / "keys"
    assert main(["audit", "init", "--dir", str(keys), "--seal", str(cfg)]) == 0
    private = keys / PRIVATE_KEY_NAME
    assert private.read_text().startswith("${sealed:kb1.")
    assert "PRIVATE KEY" not in private.read_text()
    assert private.stat().st_mode & 0o777 == 0o600
    audit = f"Audit: {{Enabled: true, Output: {tmp_path / 'audit'}, SigningKey: {private}}}\n"
    cfg.write_text(seal + audit + ENDPOINT)
    config = load(cfg)
    assert config.audit.signing_key_pem is not None
    assert "PRIVATE" not in repr(config.audit)
    with AuditLog.open(config.audit) as log:
        log.record({"request_id": "r1", "decision": "allow"})
    proof = verify_keyed(tmp_path / "audit", load_public_key(keys / PUBLIC_KEY_NAME))
    assert proof.ok and proof.lines == 1 and proof.unproven == 0, proof
    # without the Seal section the sealed key cannot be used: a config error, no key shown
    cfg.write_text(audit + ENDPOINT)
    with pytest.raises(ConfigError, match="sealed") as caught:
        AuditLog.open(load(cfg).audit)
    assert "kb1." not in str(caught.value)


def test_init_seal_needs_a_seal_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(ENDPOINT)
    assert main(["audit", "init", "--dir", str(tmp_path / "k"), "--seal", str(cfg)]) == 2
    assert "no Seal section" in capsys.readouterr().err
    assert not (tmp_path / "k" / PRIVATE_KEY_NAME).exists()


def test_the_stdout_mirror_gets_the_same_lines(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(tmp_path, mirror=open_mirror("stdout")) as log:
        log.record({"request_id": "r1", "decision": "allow"})
        log.record({"request_id": "r2", "decision": "deny"})
    out = capfd.readouterr().out
    assert out == (tmp_path / "audit.log").read_text()
    assert open_mirror("") is None


def test_the_syslog_mirror_sends_one_datagram_per_line(tmp_path: Path) -> None:
    """``Audit.Mirror: syslog:/path``: a real unix datagram socket receives each line."""
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        (tmp_path / "audit").mkdir()
        with AuditLog(tmp_path / "audit", mirror=open_mirror(f"syslog:{path}")) as log:
            log.record({"request_id": "r1", "decision": "allow"})
            log.record({"request_id": "r2", "decision": "deny"})
        got = [server.recv(65536), server.recv(65536)]
    lines = (tmp_path / "audit" / "audit.log").read_bytes().splitlines()
    assert got == [b"<86>keybroker-audit: " + line for line in lines]


def test_a_failing_mirror_never_refuses(tmp_path: Path) -> None:
    """No one listens on the socket: the file still gets every line."""
    mirror = open_mirror(f"syslog:{tmp_path / 'nobody.sock'}")
    (tmp_path / "audit").mkdir()
    with AuditLog(tmp_path / "audit", mirror=mirror) as log:
        log.record({"request_id": "r1", "decision": "allow"})
    assert len((tmp_path / "audit" / "audit.log").read_bytes().splitlines()) == 1


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("Sync: fast", "Audit.Sync"),
        ("Sync: 0ms", "Audit.Sync"),
        ("Sync: 5000ms", "Audit.Sync"),
        ("Mirror: kafka", "Audit.Mirror"),
        ("Mirror: 'syslog:relative/path'", "Audit.Mirror"),
        ("Mirror: 'syslog://host'", "Audit.Mirror"),
        ("CheckpointInterval: 0", "Audit.CheckpointInterval"),
        ("FailClosed: maybe", "Audit.FailClosed"),
        ("SigningKey: /nonexistent/key", "Audit.SigningKey"),
    ],
)
def test_bad_audit_settings_are_config_errors(line: str, path: str) -> None:
    text = f"Audit:\n  Enabled: true\n  Output: /tmp/x\n  {line}\n" + ENDPOINT
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        loads(text)


def test_a_signing_key_that_is_not_ed25519_is_a_config_error(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "ec.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key.write_bytes(pem)
    (tmp_path / "garbage.key").write_text("not a key")
    for path, why in ((key, "not an Ed25519 key"), (tmp_path / "garbage.key", "not an unencr")):
        text = f"Audit:\n  Enabled: true\n  Output: /tmp/x\n  SigningKey: {path}\n" + ENDPOINT
        with pytest.raises(ConfigError, match=f"Audit.SigningKey.*{why}") as caught:
            loads(text)
        assert "PRIVATE KEY" not in str(caught.value)


@pytest.mark.parametrize("sync", ["always", "none", "5ms", "1000ms", "ALWAYS"])
def test_good_sync_values(sync: str) -> None:
    assert loads(f"Audit:\n  Sync: {sync}\n" + ENDPOINT).audit.sync == sync
