"""The interop matrix: real clients (boto3, the AWS CLI, s3cmd, rclone, curl) through
keybroker in native mode (boto3 and curl in key-proxy mode too) to real upstreams
(moto/Werkzeug, aiohttp, nginx, and raw-socket relays that frame answers on purpose); see
tests/interop/clients.py for a cell's steps. ``pytest -m interop`` runs the matrix alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.interop import clients
from tests.interop.conftest import UPSTREAMS, Matrix

pytestmark = pytest.mark.interop

_NEEDS = {
    "s3cmd": "s3cmd",
    "s3cmd-sigv2": "s3cmd",
    "rclone": "rclone",
    "curl": "curl",
    "curl-keyproxy": "curl",
}


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", clients.CLIENTS)
def test_cell(matrix: Matrix, client: str, upstream: str, tmp_path: Path) -> None:
    if upstream not in matrix.keys:
        pytest.skip(f"{upstream} is not installed (scripts/setup installs it)")
    program = _NEEDS.get(client)
    if client == "aws-cli" and clients.aws_cli() is None:
        pytest.skip("the AWS CLI (awscli) is not installed (scripts/setup installs it)")
    if program and not clients.available(program):
        pytest.skip(f"{program} is not installed (scripts/setup installs it)")
    ak, sk = matrix.keys[upstream]
    bucket = f"interop-{client}-{upstream}"
    cell = clients.Cell(matrix.url, ak, sk, bucket, matrix.big, matrix.data, tmp_path, upstream)
    cell.presign_ak, cell.presign_sk = matrix.keys["presign"]
    cell.presigned_data = matrix.presigned_data
    cell.origin, cell.account = matrix.urls[upstream], f"interop-{upstream}"
    cell.presign_origin = matrix.urls["presign"]
    if client.startswith("boto3"):
        clients.run_boto3(cell, keyproxy=client == "boto3-keyproxy")
    elif client == "aws-cli":
        clients.run_aws_cli(cell)
    elif client.startswith("s3cmd"):
        clients.run_s3cmd(cell, sigv2=client == "s3cmd-sigv2")
    elif client == "rclone":
        clients.run_rclone(cell)
    else:
        clients.run_curl(cell, keyproxy=client == "curl-keyproxy")
    print(f"{client} x {upstream}: slowest step {cell.slowest()}")


def test_idle_close_by_the_upstream_is_not_a_failure(matrix: Matrix, tmp_path: Path) -> None:
    """raw-chunked closes a connection idle for 1 s, far below keybroker's 4 s pool
    retirement: the next requests go on new connections, none fails or stalls."""
    frame = matrix.frames["raw-chunked"]
    ak, sk = matrix.keys["raw-chunked"]
    cell = clients.Cell(
        matrix.url, ak, sk, "interop-idle", matrix.big, matrix.data, tmp_path, "raw-chunked"
    )
    s3 = clients._boto3(cell)
    s3.create_bucket(Bucket="interop-idle")
    before = frame.idle_closes
    for i in range(3):
        time.sleep(frame.idle + 0.3)
        with cell.step(f"PUT after idle {i}"):
            s3.put_object(Bucket="interop-idle", Key=f"k{i}", Body=b"x" * i)
        with cell.step(f"HEAD after idle {i}"):
            assert s3.head_object(Bucket="interop-idle", Key=f"k{i}")["ContentLength"] == i
    assert frame.idle_closes > before
    for i in range(3):
        s3.delete_object(Bucket="interop-idle", Key=f"k{i}")
    s3.delete_bucket(Bucket="interop-idle")
