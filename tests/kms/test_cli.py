"""``keybroker kms`` sub-commands, called through their entry function."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import pytest

from keybroker.cli.kms import add_kms_parser, main

ZERO = base64.urlsafe_b64encode(bytes(32)).decode()
KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
SALT = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()
CLUSTER = f"kms://cluster-kms?key={KEY}&salt={SALT}"
KAT_ID = "key-clusterID"  # tests/vectors/constellation/cluster_kms.json, the third vector
KAT = "128c164378fe8767f998fbdfe4b4d6463ec5ae1b664ea5999bc27417607ae9b6"


@pytest.fixture
def local(tmp_path: Path) -> tuple[str, str]:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    return f"kms://local?keyFile={key}", f"storage://file?path={tmp_path / 'store'}"


def test_get_dek_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get-dek", "--kms", CLUSTER, "--id", KAT_ID, "--size", "32"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (KAT + "\n", "")


def test_get_dek_external_then_list(
    local: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    kms, storage = local
    for key_id in ("b-key", "a-key", "other"):
        assert (
            main(["get-dek", "--kms", kms, "--storage", storage, "--id", key_id, "--size", "16"])
            == 0
        )
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 3 and all(len(line) == 32 for line in first)
    assert (
        main(["get-dek", "--kms", kms, "--storage", storage, "--id", "b-key", "--size", "16"]) == 0
    )
    assert capsys.readouterr().out.strip() == first[0]
    assert main(["list", "--storage", storage]) == 0
    assert capsys.readouterr().out == "a-key\nb-key\nother\n"
    assert main(["list", "--storage", storage, "--prefix", "a"]) == 0
    assert capsys.readouterr().out == "a-key\n"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["get-dek", "--kms", "kms://cluster-kms", "--id", "x", "--size", "32"],
            2,
            "keybroker kms: error: kms://cluster-kms: missing parameter(s): key, salt\n",
        ),
        (
            ["get-dek", "--kms", "kms://aws?a=1&a=2", "--id", "x", "--size", "32"],
            2,
            "keybroker kms: error: kms://aws: parameter a is given more than once\n",
        ),
        (
            ["get-dek", "--kms", "nonsense", "--id", "x", "--size", "32"],
            2,
            "keybroker kms: error: URI must look like kms://<name>?... or storage://<name>?...\n",
        ),
        (
            ["get-dek", "--kms", CLUSTER, "--id", "x", "--size", "0"],
            1,
            "keybroker kms: error: DEK size must be at least 1 byte\n",
        ),
        (
            ["get-dek", "--kms", CLUSTER, "--id", "", "--size", "32"],
            1,
            "keybroker kms: error: DEK id must not be empty\n",
        ),
        (
            ["list", "--storage", "storage://no-store"],
            2,
            "keybroker kms: error: storage://no-store is not a storage backend\n",
        ),
        (
            ["list", "--storage", "kms://local?keyFile=x"],
            2,
            "keybroker kms: error: --storage must be a storage:// URI, not kms://\n",
        ),
        (
            ["list", "--storage", "storage://file"],
            2,
            "keybroker kms: error: storage://file: missing parameter(s): path\n",
        ),
    ],
)
def test_errors_are_one_line(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert (out, err) == ("", message)


def test_integrity_failure_exit_1(
    local: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    kms, storage = local
    assert main(["get-dek", "--kms", kms, "--storage", storage, "--id", "k", "--size", "32"]) == 0
    capsys.readouterr()
    assert main(["get-dek", "--kms", kms, "--storage", storage, "--id", "k", "--size", "16"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "keybroker kms: error: stored DEK for id 'k' is 32 bytes, not the requested 16\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["get-dek"], ["get-dek", "--kms", CLUSTER, "--id", "x", "--size", "many"], ["nope"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_add_kms_parser_plugs_into_a_parent() -> None:
    parser = argparse.ArgumentParser(prog="keybroker")
    add_kms_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kms", "list", "--storage", "storage://memory"])
    assert args.command == "kms" and args.kms_command == "list"
    assert args.handler(args) == 0
