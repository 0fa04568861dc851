"""``keybroker seal`` as a user runs it, and a proxy serving with a sealed real credential.

Real processes throughout: ``keybroker seal init`` makes the master secret, ``keybroker seal``
seals the real secret key, ``keybroker serve`` opens it at start-up and re-signs boto3's
requests for a moto server that enforces SigV4 with that key.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keybroker.config.loader import loads
from keybroker.sealing import CANNOT_OPEN
from tests import logscan
from tests.procs import KEYBROKER, run_keybroker
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

REFERENCE = re.compile(r"\$\{sealed:kb1\.[A-Za-z0-9_-]+\}")
REAL = "Credentials.Real.SecretKey"


def init(directory: Path) -> str:
    """``seal init``; the ``Seal:`` section it prints."""
    r = run_keybroker("seal", "init", "--dir", str(directory))
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def seal_section(tmp_path_factory: pytest.TempPathFactory) -> str:
    return init(tmp_path_factory.mktemp("seal") / "keys")


def endpoint(name: str, proxy_ak: str, proxy_sk: str, real_ak: str, real_sk: str, up: str) -> str:
    return f"""  - CloudAccountName: {name}
    Vendor: aws
    Upstream: "{up}"
    Credentials:
      Proxy:
        AccessKey: {proxy_ak}
        SecretKey: {json.dumps(proxy_sk)}
      Real:
        AccessKey: {real_ak}
        SecretKey: {json.dumps(real_sk)}
"""


def write_config(path: Path, seal: str, *endpoints: str, head: str = "") -> Path:
    path.write_text(f"{head}{seal}Endpoints:\n{''.join(endpoints)}")
    return path


def seal_value(config: Path, account: str, value: str, field: str = "Real.SecretKey") -> str:
    r = run_keybroker(
        "seal", "--config", str(config), "--account", account, "--field", field, stdin=value
    )
    assert r.returncode == 0, r.stderr
    assert value not in r.stdout and value not in r.stderr
    reference = r.stdout.strip()
    assert REFERENCE.fullmatch(reference), reference
    logscan.register(value, reference)
    return reference


def flip(reference: str, i: int = 30) -> str:
    c = reference[i]
    return reference[:i] + ("B" if c != "B" else "C") + reference[i + 1 :]


# --- seal init -------------------------------------------------------------------------------


def test_init_writes_private_files_and_prints_the_seal_section(tmp_path: Path) -> None:
    keys = tmp_path / "new" / "keys"
    out = init(keys)
    master, salt = keys / "master.key", keys / "salt"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    secret = master.read_text().strip()
    assert len(secret) == 44 and secret not in out  # 32 bytes, referenced, never printed
    uri = yaml.safe_load(out)["Seal"]["KMS"]
    assert uri == f"kms://cluster-kms?key=file:{master}&salt={salt.read_text().strip()}"
    again = run_keybroker("seal", "init", "--dir", str(keys))
    assert again.returncode == 2 and "already exists: refusing to replace it" in again.stderr
    assert master.read_text().strip() == secret


def test_init_quotes_unusual_paths_for_the_uri(tmp_path: Path) -> None:
    keys = tmp_path / "a dir&x=%y"
    cfg = write_config(
        tmp_path / "config.yml",
        init(keys),
        endpoint(
            "acct",
            "AKIDPROXY0000000001",
            "proxy-secret-made-up-p",
            "AKIAREAL00000000001",
            "real-secret-r",
            "http://x",
        ),
    )
    reference = seal_value(cfg, "acct", "unusual-path-secret")
    text = cfg.read_text().replace('"real-secret-r"', json.dumps(reference))
    assert loads(text, env={}).endpoints[0].real.secret_key.reveal() == "unusual-path-secret"


# --- seal one value --------------------------------------------------------------------------


def test_seal_from_stdin_and_from_a_file(tmp_path: Path, seal_section: str) -> None:
    cfg = write_config(
        tmp_path / "config.yml",
        seal_section,
        endpoint(
            "acct",
            "AKIDPROXY0000000001",
            "proxy-secret-made-up-p",
            "AKIAREAL00000000001",
            "real-secret-r",
            "http://x",
        ),
    )
    real = seal_value(cfg, "acct", "from-stdin-secret\n")  # one trailing newline is dropped
    (tmp_path / "v").write_text("proxy-from-file-made-up\n")
    r = run_keybroker("seal", "-c", str(cfg), "--account", "acct", "--field", "proxy.secretkey",
            "--value-file", str(tmp_path / "v"))  # fmt: skip
    assert r.returncode == 0 and "proxy-from-file-made-up" not in r.stdout + r.stderr
    proxy = r.stdout.strip()
    text = (
        cfg.read_text()
        .replace('"real-secret-r"', json.dumps(real))
        .replace('"proxy-secret-made-up-p"', json.dumps(proxy))
    )
    ep = loads(text, env={}).endpoints[0]
    assert ep.real.secret_key.reveal() == "from-stdin-secret"
    assert ep.proxy.secret_key.reveal() == "proxy-from-file-made-up"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--account", "nope"], "x", "no endpoint named 'nope' (known: acct)"),
        ([], "x", "--account is required"),
        (["--account", "acct", "--field", "Real.Password"], "x", "field must be"),
        (["--account", "acct"], "\n", "the secret is empty"),
        (["--account", "acct", "--value-file", "/nonexistent/v"], "", "cannot read /nonexistent/v"),
    ],
)
def test_seal_usage_errors(
    tmp_path: Path, seal_section: str, args: list[str], stdin: str, message: str
) -> None:
    cfg = write_config(
        tmp_path / "config.yml",
        seal_section,
        endpoint(
            "acct",
            "AKIDPROXY0000000001",
            "proxy-secret-made-up-p",
            "AKIAREAL00000000001",
            "real-secret-r",
            "http://x",
        ),
    )
    r = run_keybroker("seal", "--config", str(cfg), *args, stdin=stdin)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and not r.stdout


def test_seal_needs_a_seal_section(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.yml",
        "",
        endpoint(
            "acct",
            "AKIDPROXY0000000001",
            "proxy-secret-made-up-p",
            "AKIAREAL00000000001",
            "real-secret-r",
            "http://x",
        ),
    )
    r = run_keybroker("seal", "--config", str(cfg), "--account", "acct", stdin="x")
    assert r.returncode == 2
    assert "no Seal.KMS in the config (make one with 'keybroker seal init --dir DIR')" in r.stderr


# --- seal --rewrite --------------------------------------------------------------------------


def test_rewrite_seals_every_plaintext_secret_in_place(tmp_path: Path, seal_section: str) -> None:
    head = "# my proxy\n"
    plain = {
        "a.proxy": "proxy-a-plain-made-up",
        "a.real": "real/a+plain=",
        "b.proxy": "$${not-a-reference}",
    }
    for v in plain.values():
        logscan.register(v)
    text = (
        f"{head}{seal_section}Endpoints:\n"
        + endpoint(
            "a",
            "AKIDPROXY0000000001",
            plain["a.proxy"],
            "AKIAREAL00000000001",
            plain["a.real"],
            "http://x",
        )
        + "  - CloudAccountName: b\n    Vendor: aws\n    Credentials:\n"
        + f"      Proxy: {{AccessKey: AKIDPROXY0000000002, SecretKey: '{plain['b.proxy']}'}}\n"
        + "      Real: {AccessKey: AKIAREAL00000000002, SecretKey: '${REAL_B}'}\n"
    )
    cfg = tmp_path / "config.yml"
    cfg.write_text(text)
    cfg.chmod(0o640)
    before = loads(text, env={"REAL_B": "from-env"})
    r = run_keybroker("seal", "--config", str(cfg), "--rewrite")
    assert r.returncode == 0, r.stderr
    for value in plain.values():
        assert value not in r.stdout + r.stderr
    assert r.stderr.count("keybroker seal: sealed ") == 3
    assert "sealed Endpoints[1].Credentials.Proxy.SecretKey" in r.stderr
    after_text = cfg.read_text()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    assert after_text.startswith("# my proxy\n") and "'${REAL_B}'" in after_text
    assert len(REFERENCE.findall(after_text)) == 3
    for value in ("proxy-a-plain-made-up", "real/a+plain="):
        assert value not in after_text
    after = loads(after_text, env={"REAL_B": "from-env"})
    for old, new in zip(before.endpoints, after.endpoints, strict=True):
        assert old.proxy.secret_key == new.proxy.secret_key
        assert old.real.secret_key == new.real.secret_key
    assert after.endpoints[1].proxy.secret_key.reveal() == "${not-a-reference}"
    again = run_keybroker("seal", "--config", str(cfg), "--rewrite")
    assert again.returncode == 0 and "no plaintext secret to seal" in again.stderr
    assert cfg.read_text() == after_text


def test_rewrite_leaves_shared_and_block_values_alone(tmp_path: Path, seal_section: str) -> None:
    text = (
        f"{seal_section}Endpoints:\n"
        "  - CloudAccountName: a\n    Vendor: aws\n    Credentials:\n"
        "      Proxy: {AccessKey: AKIDPROXY0000000001, SecretKey: &shared shared-secret-made-up}\n"
        "      Real:\n        AccessKey: AKIAREAL00000000001\n        SecretKey: |-\n"
        "          block-secret\n"
        "  - CloudAccountName: b\n    Vendor: aws\n    Credentials:\n"
        "      Proxy: {AccessKey: AKIDPROXY0000000002, SecretKey: *shared}\n"
        "      Real: {AccessKey: AKIAREAL00000000002, SecretKey: other-secret}\n"
    )
    cfg = tmp_path / "config.yml"
    cfg.write_text(text)
    r = run_keybroker("seal", "--config", str(cfg), "--rewrite")
    assert r.returncode == 0, r.stderr
    assert (
        "left Endpoints[0].Credentials.Proxy.SecretKey as it is (shared through a YAML alias)"
        in r.stderr
    )
    assert "left Endpoints[0].Credentials.Real.SecretKey as it is (a block scalar)" in r.stderr
    assert "sealed Endpoints[1].Credentials.Real.SecretKey" in r.stderr
    cfg_after = loads(cfg.read_text(), env={})
    assert cfg_after.endpoints[1].real.secret_key.reveal() == "other-secret"
    assert cfg_after.endpoints[0].real.secret_key.reveal() == "block-secret"


# --- check and serve -------------------------------------------------------------------------


def test_check_refuses_moved_tampered_and_foreign_values(tmp_path: Path, seal_section: str) -> None:
    eps = [
        endpoint(
            "a",
            "AKIDPROXY0000000001",
            "proxy-secret-made-up-p1",
            "AKIAREAL00000000001",
            "real-secret-ra",
            "http://x",
        ),
        endpoint(
            "b",
            "AKIDPROXY0000000002",
            "proxy-secret-made-up-p2",
            "AKIAREAL00000000002",
            "real-secret-rb",
            "http://x",
        ),
    ]
    cfg = write_config(tmp_path / "config.yml", seal_section, *eps)
    ref_a = seal_value(cfg, "a", "secret-of-account-a")
    good = cfg.read_text().replace('"real-secret-ra"', json.dumps(ref_a))
    cfg.write_text(good)
    assert run_keybroker("check", "--config", str(cfg)).returncode == 0
    cases = {
        "moved to b": good.replace('"real-secret-rb"', json.dumps(ref_a)),
        "moved to a's proxy": good.replace('"proxy-secret-made-up-p1"', json.dumps(ref_a)),
        "tampered": good.replace(ref_a, flip(ref_a)),
    }
    where = {
        "moved to b": f"config.yml:23: Endpoints[1].{REAL}",
        "moved to a's proxy": "config.yml:10: Endpoints[0].Credentials.Proxy.SecretKey",
        "tampered": f"config.yml:13: Endpoints[0].{REAL}",
    }
    for name, text in cases.items():
        cfg.write_text(text)
        r = run_keybroker("check", "--config", str(cfg))
        assert r.returncode == 1, name
        assert f"{where[name]}: {CANNOT_OPEN}" in r.stderr, (name, r.stderr)
        assert ref_a not in r.stderr and "secret-of-account-a" not in r.stderr
    other = write_config(tmp_path / "other.yml", init(tmp_path / "other-keys"), *eps)
    other.write_text(other.read_text().replace('"real-secret-ra"', json.dumps(ref_a)))
    r = run_keybroker("check", "--config", str(other))
    assert r.returncode == 1 and f"Endpoints[0].{REAL}: {CANNOT_OPEN}" in r.stderr


def aws_client(service: str, url: str, ak: str, sk: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def wait_for_log(path: Path, needle: str) -> None:
    wait_until(lambda: path.exists() and needle in path.read_text(), timeout=20, what=needle)


def test_serve_with_a_sealed_real_key_end_to_end(
    tmp_path: Path, moto_auth: tuple[str, str, str]
) -> None:
    """The embedded default (cluster KMS from files, no cloud) seals moto's real key; the
    proxy opens it at start-up and re-signs, and refuses a tampered value on reload."""
    moto_url, real_ak, real_sk = moto_auth
    proxy_ak, proxy_sk = "AKIDPROXYSEAL0000001", secrets.token_urlsafe(30)
    logscan.register(proxy_sk)
    logs = logscan.log_dir(tmp_path / "log")
    port = free_port()
    head = (
        f'Http: {{Address: "127.0.0.1:{port}", Workers: 1, ShutdownTimeout: 5}}\n'
        f"Log: {{Output: {json.dumps(str(logs))}, Level: debug}}\n"
    )
    seal = init(tmp_path / "keys")
    eps = endpoint("acct", proxy_ak, proxy_sk, real_ak, "REAL-PLACEHOLDER", moto_url)
    cfg = write_config(tmp_path / "config.yml", seal, eps, head=head)
    sealed = seal_value(cfg, "acct", real_sk)
    good = cfg.read_text().replace('"REAL-PLACEHOLDER"', json.dumps(sealed))
    assert real_sk not in good
    cfg.write_text(good)

    proc = subprocess.Popen(
        [*KEYBROKER, "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(port_open(port), what="keybroker serve")
        proxy_url = f"http://127.0.0.1:{port}"
        sts = aws_client("sts", proxy_url, proxy_ak, proxy_sk)
        assert sts.get_caller_identity()["Arn"].endswith(":user/keybroker-real")
        s3 = aws_client("s3", proxy_url, proxy_ak, proxy_sk)
        bucket = f"sealed-{secrets.token_hex(4)}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"through the sealed key")
        real = aws_client("s3", moto_url, real_ak, real_sk)
        assert real.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through the sealed key"

        # A tampered value on reload is refused; the running config stays in place.
        cfg.write_text(good.replace(sealed, flip(sealed)))
        os.kill(proc.pid, signal.SIGHUP)
        wait_for_log(logs / "key_proxy.log", "config reload rejected")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through the sealed key"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log_text = (logs / "key_proxy.log").read_text()
    assert f"Endpoints[0].{REAL}: {CANNOT_OPEN}" in log_text
    for text in (log_text, out.decode(), err.decode()):
        assert real_sk not in text and sealed not in text and flip(sealed) not in text


def test_serve_refuses_a_tampered_value_at_start_up(tmp_path: Path, seal_section: str) -> None:
    port = free_port()
    head = f'Http: {{Address: "127.0.0.1:{port}", Workers: 1}}\n'
    eps = endpoint(
        "acct",
        "AKIDPROXY0000000001",
        "proxy-secret-made-up-p",
        "AKIAREAL00000000001",
        "real-secret-r",
        "http://x",
    )
    cfg = write_config(tmp_path / "config.yml", seal_section, eps, head=head)
    sealed = seal_value(cfg, "acct", "start-up-secret")
    cfg.write_text(cfg.read_text().replace('"real-secret-r"', json.dumps(flip(sealed))))
    started = time.monotonic()
    r = subprocess.run(
        [*KEYBROKER, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and time.monotonic() - started < 30
    assert f"config.yml:14: Endpoints[0].{REAL}: {CANNOT_OPEN}" in r.stderr
    assert sealed not in r.stderr and flip(sealed) not in r.stderr and "Traceback" not in r.stderr


def _yaml_scalar(value: str, style: str) -> str:
    if style == "double":
        return json.dumps(value, ensure_ascii=False)
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    return value


_VALUE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), max_codepoint=0x3000),
    min_size=1,
    max_size=30,
).filter(lambda v: not v.startswith("$") and v.strip() == v and len(v) >= 6)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.tuples(_VALUE, st.sampled_from(["double", "single", "plain"])), min_size=2, max_size=2
    )
)
def test_rewrite_keeps_every_value_whatever_its_quoting(
    tmp_path: Path, seal_section: str, values: list[tuple[str, str]]
) -> None:
    from keybroker.cli.main import main

    # The proxy's value sits in a flow mapping, the real one in a block: check each parses.
    wrappers = ("{{k: {}}}", "k: {}")
    scalars = []
    for (value, style), wrap in zip(values, wrappers, strict=True):
        text = _yaml_scalar(value, style)
        try:
            ok = yaml.safe_load(wrap.format(text)) == {"k": value}
        except yaml.YAMLError:
            ok = False
        scalars.append(text if ok else json.dumps(value, ensure_ascii=False))
    assume(values[0][0] != values[1][0])  # a proxy secret never equals the real one
    proxy = f"{{AccessKey: AKIDPROXY0000000001, SecretKey: {scalars[0]}}}"
    cfg = tmp_path / "prop.yml"
    cfg.write_text(
        f"Security:\n  AllowWeakProxySecrets: true\n"
        f"{seal_section}Endpoints:\n  - CloudAccountName: acct\n    Vendor: aws\n"
        f"    Credentials:\n      Proxy: {proxy}\n"
        f"      Real:\n        AccessKey: AKIAREAL00000000001\n        SecretKey: {scalars[1]}\n"
    )
    before = loads(cfg.read_text(), env={}).endpoints[0]
    assert main(["seal", "--config", str(cfg), "--rewrite"]) == 0
    after_text = cfg.read_text()
    assert len(REFERENCE.findall(after_text)) == 2
    after = loads(after_text, env={}).endpoints[0]
    assert after.proxy.secret_key == before.proxy.secret_key
    assert after.real.secret_key == before.real.secret_key
