"""KEK rotation: the local keyset (file format, atomic and serialised rotation, stale readers),
AWS KMS on moto (RotateKeyOnDemand and the version label), and ``keybroker kms rotate``.
GCP and Azure rotation (and their ``kms rotate``) are tested with their fakes, in
test_gcp_kms.py and test_azure_kv.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import pytest

from keybroker.cli.kms import main
from keybroker.kms.backends.aws import AWSKMSWrapper
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.uri import parse_uri

REGION = "eu-west-1"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_bytes(bytes(range(32)))
    path.chmod(0o600)
    return path


async def test_rotate_turns_a_raw_key_into_a_keyset(key_file: Path) -> None:
    w = LocalKeyWrapper.from_key_file(key_file)
    old = await w.wrap(b"e" * 32, b"aad")
    assert (old.kek_id, old.kek_version) == ("local:630dcd2966c43366", "1")

    assert await w.rotate() == "2"
    doc = json.loads(key_file.read_text())
    assert doc["keybroker_keyset"] == 1 and doc["primary"] == "2"
    assert doc["kek_id"] == "local:630dcd2966c43366"  # the KEK keeps its id across versions
    assert base64.b64decode(doc["versions"]["1"]) == bytes(range(32))
    assert len(base64.b64decode(doc["versions"]["2"])) == 32
    assert base64.b64decode(doc["versions"]["2"]) != bytes(range(32))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    new = await w.wrap(b"f" * 32, b"aad")
    assert (new.kek_id, new.kek_version) == (old.kek_id, "2")
    assert await w.unwrap(old, b"aad") == b"e" * 32  # old versions still unwrap
    assert await w.unwrap(new, b"aad") == b"f" * 32
    assert await w.rotate() == "3"
    assert w.versions == ["1", "2", "3"]


async def test_keyset_is_read_back_by_a_new_wrapper(key_file: Path) -> None:
    w = LocalKeyWrapper.from_key_file(key_file)
    await w.rotate()
    wrapped = await w.wrap(b"k" * 32, b"")
    again = LocalKeyWrapper.from_key_file(key_file)
    assert again.kek_id == w.kek_id and again.versions == ["1", "2"]
    assert await again.unwrap(wrapped, b"") == b"k" * 32
    assert (await again.wrap(b"x", b"")).kek_version == "2"


async def test_a_stale_wrapper_learns_new_versions_from_the_file(key_file: Path) -> None:
    stale = LocalKeyWrapper.from_key_file(key_file)  # e.g. a server started before rotation
    rotator = LocalKeyWrapper.from_key_file(key_file)
    await rotator.rotate()
    fresh_blob = await rotator.wrap(b"n" * 32, b"")
    assert await stale.unwrap(fresh_blob, b"") == b"n" * 32
    assert await stale.current_version() == "2"


async def test_unknown_version_is_the_opaque_error(key_file: Path) -> None:
    w = LocalKeyWrapper.from_key_file(key_file)
    wrapped = await w.wrap(b"k" * 32, b"")
    for version in ("7", "x", "2"):
        with pytest.raises(IntegrityError, match="cannot be unwrapped with this KEK"):
            await w.unwrap(type(wrapped)(wrapped.kek_id, version, wrapped.ciphertext), b"")


def test_concurrent_rotations_never_lose_a_version(key_file: Path) -> None:
    """Threads with their own wrappers (own file descriptors, so flock really arbitrates)."""
    results: list[str] = []

    def rotate_many() -> None:
        w = LocalKeyWrapper.from_key_file(key_file)
        for _ in range(5):
            results.append(asyncio.run(w.rotate()))

    threads = [threading.Thread(target=rotate_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(n) for n in range(2, 22)]
    assert LocalKeyWrapper.from_key_file(key_file).versions == [str(n) for n in range(1, 22)]


async def test_a_wrapper_without_a_file_cannot_rotate() -> None:
    with pytest.raises(KMSConfigError, match="only a wrapper made from a keyFile can rotate"):
        await LocalKeyWrapper(os.urandom(32)).rotate()


KEY_B64 = base64.b64encode(b"S" * 32).decode()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"keybroker_keyset": 2}', "keybroker_keyset must be 1"),
        (
            json.dumps(
                {"keybroker_keyset": 1, "kek_id": "x", "primary": "1", "versions": {"1": KEY_B64}}
            ).encode(),
            "kek_id must be a string starting with 'local:'",
        ),
        (
            json.dumps(
                {"keybroker_keyset": 1, "kek_id": "local:a", "primary": "1", "versions": {}}
            ).encode(),
            "versions must be a non-empty object",
        ),
        (
            json.dumps(
                {
                    "keybroker_keyset": 1,
                    "kek_id": "local:a",
                    "primary": "1",
                    "versions": {"1": KEY_B64[:-8] + "AAAA===="},
                }
            ).encode(),
            "every version must be 32 base64-encoded bytes",
        ),
        (
            json.dumps(
                {
                    "keybroker_keyset": 1,
                    "kek_id": "local:a",
                    "primary": "v1",
                    "versions": {"v1": KEY_B64},
                }
            ).encode(),
            "version names must be positive decimal numbers",
        ),
        (
            json.dumps(
                {
                    "keybroker_keyset": 1,
                    "kek_id": "local:a",
                    "primary": "1",
                    "versions": {"1": KEY_B64, "2": KEY_B64},
                }
            ).encode(),
            "primary must be the highest version",
        ),
    ],
)
def test_malformed_keyset(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "keyset"
    path.write_bytes(content)
    with pytest.raises(KMSConfigError) as info:
        LocalKeyWrapper.from_key_file(path)
    assert str(info.value) == f"kms://local: keyFile {path} is not a valid keyset: {why}"
    assert KEY_B64 not in str(info.value)


# -- AWS KMS (moto) --------------------------------------------------------------------------


def aws_uri(url: str, key: str) -> str:
    q = urllib.parse.quote
    return (
        f"kms://aws?region={REGION}&accessKeyID=t&accessKey=t&keyName={q(key, safe='')}"
        f"&endpoint={q(url, safe='')}"
    )


def kms_client(url: str) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )


async def test_aws_rotate_labels_new_wraps_and_old_blobs_still_unwrap(moto_url: str) -> None:
    meta = kms_client(moto_url).create_key()["KeyMetadata"]
    arn = meta["Arn"]
    w = AWSKMSWrapper.from_uri(parse_uri(aws_uri(moto_url, meta["KeyId"])))
    try:
        assert await w.current_version() == arn  # never rotated: the plain ARN
        before = await w.wrap(b"b" * 32, b"ctx")
        assert before.kek_version == arn

        assert await w.rotate() == f"{arn}#rotation-1"
        rotations = kms_client(moto_url).list_key_rotations(KeyId=meta["KeyId"])["Rotations"]
        assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]  # seen by AWS itself

        after = await w.wrap(b"a" * 32, b"ctx")
        assert after.kek_version == f"{arn}#rotation-1"
        assert await w.unwrap(before, b"ctx") == b"b" * 32
        assert await w.unwrap(after, b"ctx") == b"a" * 32
        with pytest.raises(IntegrityError):
            await w.unwrap(after, b"other")  # the label does not loosen the context check
    finally:
        await w.close()


async def test_aws_rotation_by_someone_else_is_seen_by_current_version(moto_url: str) -> None:
    meta = kms_client(moto_url).create_key()["KeyMetadata"]
    w = AWSKMSWrapper.from_uri(parse_uri(aws_uri(moto_url, meta["KeyId"])))
    try:
        await w.open()
        for _ in range(2):
            kms_client(moto_url).rotate_key_on_demand(KeyId=meta["KeyId"])
        assert await w.current_version() == f"{meta['Arn']}#rotation-2"
    finally:
        await w.close()


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_rotate_local(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"kms://local?keyFile={key_file}"
    assert main(["rotate", "--kms", uri]) == 0
    assert main(["rotate", "--kms", uri]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("2\n3\n", "")
    assert json.loads(key_file.read_text())["primary"] == "3"


def test_cli_rotate_aws(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    meta = kms_client(moto_url).create_key()["KeyMetadata"]
    assert main(["rotate", "--kms", aws_uri(moto_url, meta["KeyId"])]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"{meta['Arn']}#rotation-1\n", "")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "kms://vault?address=https%3A%2F%2F127.0.0.1%3A1&token=t&keyName=k",
            "kms://vault cannot be rotated by keybroker: rotate it with the provider's tools, "
            "then run 'keybroker kms rewrap'",
        ),
        (
            "kms://cluster-kms?key=AAAA&salt=AAAA",
            "--kms must name a key-wrapping kms:// URI (not cluster-kms)",
        ),
        ("storage://memory", "--kms must name a key-wrapping kms:// URI (not cluster-kms)"),
    ],
)
def test_cli_rotate_refusals(uri: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rotate", "--kms", uri]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"keybroker kms: error: {message}\n")


def test_cli_rotate_help_names_the_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "make a new KEK version (local, aws, gcp, azure)" in capsys.readouterr().out


def test_cli_rotate_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent"
    assert main(["rotate", "--kms", f"kms://local?keyFile={path}"]) == 2
    reason = "No such file or directory"
    assert capsys.readouterr().err == (
        f"keybroker kms: error: kms://local: cannot read keyFile {path}: {reason}\n"
    )


def test_cli_rewrap_after_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, store = tmp_path / "kek", tmp_path / "store"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    kms, storage = f"kms://local?keyFile={key}", f"storage://file?path={store}"
    for key_id in ("a", "b", "c"):
        assert (
            main(["get-dek", "--kms", kms, "--storage", storage, "--id", key_id, "--size", "32"])
            == 0
        )
    deks = capsys.readouterr().out
    assert main(["rotate", "--kms", kms]) == 0
    capsys.readouterr()

    assert main(["rewrap", "--kms", kms, "--storage", storage, "--state", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert out == "rewrap: 3 rewrapped, 0 skipped, 0 failed of 3 (KEK version 2)\n"
    assert err.startswith("\rrewrap [") and err.endswith(
        "] 3/3 (3 rewrapped, 0 skipped, 0 failed)\n"
    )
    assert "#" * 30 in err.rsplit("\r", 1)[-1]
    assert main(["rewrap", "--kms", kms, "--storage", storage]) == 0
    assert capsys.readouterr().out == (
        "rewrap: 0 rewrapped, 3 skipped, 0 failed of 3 (KEK version 2)\n"
    )
    for key_id in ("a", "b", "c"):
        assert (
            main(["get-dek", "--kms", kms, "--storage", storage, "--id", key_id, "--size", "32"])
            == 0
        )
    assert capsys.readouterr().out == deks  # the same DEKs, now under version 2


def test_cli_rewrap_reports_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, store = tmp_path / "kek", tmp_path / "store"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    (store).mkdir()
    (store / "junk").write_bytes(b"not a blob")
    kms, storage = f"kms://local?keyFile={key}", f"storage://file?path={store}"
    assert main(["rewrap", "--kms", kms, "--storage", storage]) == 1
    out, err = capsys.readouterr()
    assert out == "rewrap: 0 rewrapped, 0 skipped, 1 failed of 1 (KEK version 1)\n"
    assert (
        "keybroker kms: error: 'junk': stored blob for id 'junk' is malformed: "
        "its format is unknown\n"
    ) in err


def test_cli_rewrap_refuses_cluster_kms(capsys: pytest.CaptureFixture[str]) -> None:
    zero = base64.urlsafe_b64encode(bytes(32)).decode()
    cluster = f"kms://cluster-kms?key={zero}&salt={zero}"
    assert main(["rewrap", "--kms", cluster, "--storage", "storage://memory"]) == 2
    assert "cluster-kms" in capsys.readouterr().err
