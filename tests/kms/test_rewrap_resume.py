"""Bulk rewrap killed with SIGKILL half way (the ``keybroker kms rewrap`` CLI) and resumed
from its state file: 10,000 DEKs on file storage with the local wrapper, and DEKs on moto S3
with moto KMS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import boto3
import pytest

from keybroker.kms.backends.aws import AWSKMSWrapper
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.external import ExternalKMS
from keybroker.kms.rewrap import rewrap_all
from keybroker.kms.storage.file import FileStorage
from keybroker.kms.storage.s3 import S3Storage
from keybroker.kms.uri import parse_uri
from tests.kms.test_rewrap import REGION, check_all, seed

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

# -- killed half way and resumed -------------------------------------------------------------


def start_cli_rewrap(kms_uri: str, storage_uri: str, state: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "keybroker", "kms", "rewrap", "--kms", kms_uri]
    cmd += ["--storage", storage_uri, "--state", str(state), "--concurrency", "8"]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def kill_when_progress_shows(proc: subprocess.Popen[bytes], state: Path) -> str:
    """SIGKILL the rewrap as soon as its state file records progress; return ``last_done``."""
    deadline = time.monotonic() + 60
    while not state.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rewrap never recorded progress"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return str(json.loads(state.read_text())["last_done"])


async def test_killed_rewrap_of_10000_deks_resumes(tmp_path: Path) -> None:
    key, store, state = tmp_path / "kek", tmp_path / "store", tmp_path / "state.json"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    kms = ExternalKMS(LocalKeyWrapper.from_key_file(key), FileStorage(store))
    originals = await seed(kms, 10_000)
    await kms.wrapper.rotate()  # type: ignore[attr-defined]

    proc = start_cli_rewrap(f"kms://local?keyFile={key}", f"storage://file?path={store}", state)
    last_done = kill_when_progress_shows(proc, state)
    assert last_done < max(originals)  # really killed half way

    report = await rewrap_all(kms, state_path=state, concurrency=16)
    assert report.resumed_after == last_done
    assert report.total == sum(1 for k in originals if k > last_done)
    assert report.failed == 0 and report.rewrapped + report.skipped == report.total
    assert report.rewrapped > 0 and not state.exists()
    await check_all(kms, originals, "2")

    again = await rewrap_all(kms, state_path=state, concurrency=16)
    assert (again.rewrapped, again.skipped, again.failed) == (0, 10_000, 0)
    await kms.close()


MOTO_DEKS = int(os.environ.get("KEYBROKER_TEST_MOTO_DEKS", "10000"))


@pytest.mark.timeout(1800)
async def test_killed_rewrap_on_moto_s3_and_kms_resumes(moto_url: str, tmp_path: Path) -> None:
    """The same on moto S3 + moto KMS, with 10,000 DEKs (the slowest test of the suite: moto
    serves a few hundred requests a second here and a DEK costs about ten requests in all;
    ``KEYBROKER_TEST_MOTO_DEKS`` makes it smaller for a quick local run)."""
    q = urllib.parse.quote
    kms_api = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    key_id = kms_api.create_key()["KeyMetadata"]["KeyId"]
    endpoint = q(moto_url, safe="")
    kms_uri = (
        f"kms://aws?region={REGION}&accessKeyID=t&accessKey=t&keyName={key_id}&endpoint={endpoint}"
    )
    bucket = f"kb-{uuid.uuid4().hex}"
    storage_uri = (
        f"storage://aws?bucket={bucket}&region={REGION}&accessKeyID=t&accessKey=t"
        f"&endpoint={endpoint}"
    )
    kms = ExternalKMS(
        AWSKMSWrapper.from_uri(parse_uri(kms_uri)),
        S3Storage.from_uri(parse_uri(storage_uri)),
    )
    try:
        originals = await seed(kms, MOTO_DEKS)
        new_version = await kms.wrapper.rotate()  # type: ignore[attr-defined]
        assert new_version.endswith("#rotation-1")

        state = tmp_path / "state.json"
        last_done = kill_when_progress_shows(start_cli_rewrap(kms_uri, storage_uri, state), state)
        assert last_done < max(originals)

        report = await rewrap_all(kms, state_path=state, concurrency=16)
        assert report.resumed_after == last_done and report.failed == 0
        assert report.rewrapped + report.skipped == report.total
        await check_all(kms, originals, new_version)

        again = await rewrap_all(kms, concurrency=16)
        assert (again.rewrapped, again.skipped, again.failed) == (0, MOTO_DEKS, 0)
    finally:
        await kms.close()
