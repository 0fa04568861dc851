"""aws-chunked uploads end to end, through a real ``keybroker serve`` process.

boto3 sends S3 uploads over HTTPS as ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (a CRC32 checksum
trailer); those go to a moto server that enforces SigV4 with the real key.  No Python SDK writes
chunk-signed bodies, so those are written by the reference writer of ``test_aws_chunked_ref``
and sent over a raw HTTP connection; they go to moto (which stores them) and to a recording
upstream whose bodies the reference reader checks, seed and every chunk, with the real key.
The proxy's resident memory is sampled from /proc while 64 MiB pass through it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from keybroker.signers.sigv4 import chunked
from tests import logscan
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.servers import free_port, port_open, wait_until
from tests.signers import test_aws_chunked_ref as ref
from tests.test_cli import _self_signed

MIB = 1024 * 1024
REGION = "us-east-1"


@dataclass
class Broker:
    """A keybroker process in front of moto (account "moto") and a recorder ("rec")."""

    proc: subprocess.Popen[bytes]
    https_port: int
    https_url: str
    cert: Path
    moto_url: str
    real_ak: str
    real_sk: str
    recorder: Recorder
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # account -> proxy AK/SK
    rec_real: tuple[str, str] = ("", "")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def s3(self, **config: Any) -> Any:
        ak, sk = self.keys["moto"]
        return boto3.client(
            "s3",
            endpoint_url=self.https_url,
            region_name=REGION,
            aws_access_key_id=ak,
            aws_secret_access_key=sk,
            verify=str(self.cert),
            config=BotoConfig(
                retries={"max_attempts": 1},
                **({"s3": {"addressing_style": "path"}} | config),
            ),
        )

    def real_s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id=self.real_ak,
            aws_secret_access_key=self.real_sk,
            config=BotoConfig(s3={"addressing_style": "path"}),
        )


def _config(tmp: Path, broker: dict[str, Any], tls: tuple[Path, Path]) -> Path:
    endpoints = ""
    for name, upstream, (pak, psk), (rak, rsk) in broker["accounts"]:
        endpoints += f"""
  - CloudAccountName: "{name}"
    Vendor: "aws"
    Upstream: "{upstream}"
    Credentials:
      Proxy:
        AccessKey: "{pak}"
        SecretKey: "{psk}"
      Real:
        AccessKey: "{rak}"
        SecretKey: "{rsk}"
"""
    text = f"""
Http:
  Address: "127.0.0.1:{free_port()}"
  MaxBodyBytes: {256 * MIB}
  Tls:
    Enabled: true
    Address: "127.0.0.1:{broker["https_port"]}"
    CertFile: "{tls[0]}"
    KeyFile: "{tls[1]}"
Log:
  Output: {tmp / "log"}
  Level: info
Endpoints:{endpoints}
"""
    path = tmp / "config.yml"
    path.write_text(text)
    logscan.log_dir(tmp / "log")
    return path


@pytest.fixture(scope="module")
def broker(
    moto_auth: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    moto_url, real_ak, real_sk = moto_auth
    tmp = tmp_path_factory.mktemp("chunked")
    cert, key = _self_signed(tmp)
    moto_proxy = ("AKIDCHUNKMOTO" + secrets.token_hex(4).upper(), secrets.token_urlsafe(30))
    rec_proxy = ("AKIDCHUNKREC" + secrets.token_hex(4).upper(), secrets.token_urlsafe(30))
    rec_real = ("AKIARECREAL" + secrets.token_hex(4).upper(), secrets.token_urlsafe(30))
    logscan.register(moto_proxy[1], rec_proxy[1], rec_real[1])
    https_port = free_port()
    with recording_upstream() as rec:
        settings = {
            "https_port": https_port,
            "accounts": [
                ("moto", moto_url, moto_proxy, (real_ak, real_sk)),
                ("rec", rec.url, rec_proxy, rec_real),
            ],
        }
        cfg = _config(tmp, settings, (cert, key))
        proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
        try:
            wait_until(port_open(https_port), what="keybroker serve (tls)")
            b = Broker(
                proc,
                https_port,
                f"https://127.0.0.1:{https_port}",
                cert,
                moto_url,
                real_ak,
                real_sk,
                rec,
                {"moto": moto_proxy, "rec": rec_proxy},
                rec_real,
            )
            b.real_s3().create_bucket(Bucket="chunked")
            yield b
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stored(b: Broker, key: str) -> bytes | None:
    try:
        return b.real_s3().get_object(Bucket="chunked", Key=key)["Body"].read()  # type: ignore[no-any-return]
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("NoSuchKey", "404")
        return None


def _content_sha_lines(client: Any) -> list[str]:
    seen: list[str] = []

    def record(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            seen.append(request.headers.get("x-amz-content-sha256", b"").decode())

    client.meta.events.register("before-send.s3", record)
    return seen


# -- boto3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, chunked.UNSIGNED_TRAILER),  # boto3's default for PutObject over HTTPS
        (
            {
                "request_checksum_calculation": "when_required",
                "s3": {"addressing_style": "path", "payload_signing_enabled": False},
            },
            "UNSIGNED-PAYLOAD",
        ),
        ({"request_checksum_calculation": "when_required"}, None),  # a hashed body
    ],
    ids=["trailer", "unsigned", "sha256"],
)
def test_boto3_put_object_payload_modes_arrive_intact(
    broker: Broker, config: dict[str, Any], expected: str | None
) -> None:
    s3 = broker.s3(**config)
    lines = _content_sha_lines(s3)
    data = os.urandom(3 * MIB + 17)
    key = f"mode-{expected}"
    s3.put_object(Bucket="chunked", Key=key, Body=data)
    assert lines and (lines[0] == expected if expected else len(lines[0]) == 64)
    assert _stored(broker, key) == data


def test_boto3_upload_file_64mib_single_and_multipart_with_flat_proxy_memory(
    broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(64 * MIB)
    path.write_bytes(data)
    s3 = broker.s3()
    lines = _content_sha_lines(s3)
    s3.put_object(Bucket="chunked", Key="warm-up", Body=b"w" * 300_000)  # settle the baseline
    single = TransferConfig(multipart_threshold=1 << 30, use_threads=False)
    multi = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
    with _peak_rss(broker) as peak:
        s3.upload_file(str(path), "chunked", "big-single", Config=single)
        s3.upload_file(str(path), "chunked", "big-multi", Config=multi)
    assert peak["growth"] < 60 * MIB, f"proxy RSS grew by {peak['growth'] / MIB:.1f} MiB"
    assert set(lines) == {chunked.UNSIGNED_TRAILER} and len(lines) >= 1 + 1 + 8
    for key in ("big-single", "big-multi"):
        stored = _stored(broker, key)
        assert stored is not None and _sha(stored) == _sha(data)


class _peak_rss:
    """Sample the proxy's VmRSS every 20 ms; ``growth`` is the peak minus the start."""

    def __init__(self, b: Broker) -> None:
        self.b, self.result = b, {"growth": 0}
        self.stop = threading.Event()

    def __enter__(self) -> dict[str, int]:
        self.base = self.b.rss()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self.result

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.result["growth"] = max(self.result["growth"], self.b.rss() - self.base)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def test_a_wrong_checksum_trailer_is_refused_and_nothing_stored(broker: Broker) -> None:
    data = os.urandom(300_000)
    body = ref.encode_unsigned(data, [65536], "x-amz-checksum-crc32")
    body = body[:-12] + (b"AAAAAA==" if body[-12:-4] != b"AAAAAA==" else b"AAAAAQ==") + body[-4:]
    status, answer = _raw_put(
        broker, "moto", "bad-crc", body, len(data), chunked.UNSIGNED_TRAILER, "x-amz-checksum-crc32"
    )
    assert status == 401, answer
    assert _stored(broker, "bad-crc") is None


# -- chunk-signed uploads --------------------------------------------------------------------


def _raw_put(
    b: Broker,
    account: str,
    key: str,
    body: bytes | None,
    decoded: int,
    line: str,
    trailer: str | None = None,
    data: bytes = b"",
    sizes: tuple[int, ...] = (65536,),
    tamper_at: int | None = None,
    http_chunked: bool = False,
) -> tuple[int, bytes]:
    """PUT /chunked/<key> signed with the account's proxy key; chunk-signed bodies are written
    here (``body is None``) from ``data``, chained from the seed just made.  ``http_chunked``:
    no Content-Length, the body goes with ``Transfer-Encoding: chunked``."""
    ak, sk = b.keys[account]
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    host = f"127.0.0.1:{b.https_port}"
    length = (
        len(body)
        if body is not None
        else len(ref.encode_signed(data, sizes, _chain(sk, now, ""), trailer))
    )
    headers = {
        "host": host,
        "content-encoding": "aws-chunked",
        "content-length": str(length),
        "x-amz-content-sha256": line,
        "x-amz-date": now,
        "x-amz-decoded-content-length": str(decoded),
    }
    if trailer:
        headers["x-amz-trailer"] = trailer
    if http_chunked:
        del headers["content-length"]
        headers["transfer-encoding"] = "chunked"
    names = sorted(n for n in headers if n != "transfer-encoding")
    path = f"/chunked/{key}"
    seed = ref.seed_signature(
        _chain(sk, now, ""), ref.canonical_seed("PUT", path, headers, names, line)
    )
    if body is None:
        body = ref.encode_signed(data, sizes, _chain(sk, now, seed), trailer)
    if tamper_at is not None:
        tampered = bytearray(body)
        tampered[tamper_at] ^= 1
        body = bytes(tampered)
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ak}/{now[:8]}/{REGION}/s3/aws4_request, "
        f"SignedHeaders={';'.join(names)}, Signature={seed}"
    )
    tls = ssl.create_default_context(cafile=str(b.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", b.https_port, timeout=120, context=tls)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        try:
            for i in range(0, len(body), 65536):
                piece = body[i : i + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if http_chunked else piece)
            if http_chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy answered early and stopped reading: its answer is still there
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _chain(secret: str, timestamp: str, seed: str) -> ref.Chain:
    return ref.chain_for(secret, timestamp, REGION, "s3", seed)


@pytest.mark.parametrize(
    ("line", "trailer"),
    [(chunked.SIGNED, None), (chunked.SIGNED_TRAILER, "x-amz-checksum-crc32c")],
    ids=["signed", "signed-trailer"],
)
def test_chunk_signed_upload_is_resigned_for_the_upstream(
    broker: Broker, line: str, trailer: str | None
) -> None:
    """The recorder gets a body whose seed and chunks verify with the real key only."""
    data = os.urandom(1 * MIB + 12345)
    before = len(broker.recorder.seen)
    status, answer = _raw_put(
        broker, "rec", "signed", None, len(data), line, trailer, data, sizes=(100_000, 8192)
    )
    assert status == 200, answer
    seen = broker.recorder.seen[before]
    assert int(seen.headers["Content-Length"]) == len(seen.body)
    _check_resigned(broker, seen, line, trailer, data)


def test_chunk_signed_upload_without_content_length_is_sent_chunked(broker: Broker) -> None:
    data = os.urandom(300_000)
    before = len(broker.recorder.seen)
    status, answer = _raw_put(
        broker, "rec", "signed", None, len(data), chunked.SIGNED, None, data, http_chunked=True
    )
    assert status == 200, answer
    seen = broker.recorder.seen[before]
    assert "Content-Length" not in seen.headers
    assert seen.headers["Transfer-Encoding"] == "chunked"
    _check_resigned(broker, seen, chunked.SIGNED, None, data)


def test_chunk_signed_request_without_a_body_is_a_400(broker: Broker) -> None:
    status, answer = _raw_put(broker, "rec", "empty", b"", 0, chunked.SIGNED)
    assert status == 400
    assert b"has no body" in answer


def _check_resigned(broker: Broker, seen: Any, line: str, trailer: str | None, data: bytes) -> None:
    """The reference reader accepts the body with the real key, and only with it."""
    authz = seen.headers["Authorization"]
    rak, rsk = broker.rec_real
    assert authz.startswith(f"AWS4-HMAC-SHA256 Credential={rak}/")
    timestamp, seed = seen.headers["X-Amz-Date"], authz.rsplit("Signature=", 1)[1]
    names = authz.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k.lower(): v for k, v in seen.headers.items()}
    canonical = ref.canonical_seed("PUT", "/chunked/signed", headers, names, line)
    assert ref.seed_signature(_chain(rsk, timestamp, ""), canonical) == seed
    assert ref.decode(seen.body, _chain(rsk, timestamp, seed), trailer) == data
    proxy_sk = broker.keys["rec"][1]
    with pytest.raises(ref.ChunkError):  # the client's chunk signatures are gone
        ref.decode(seen.body, _chain(proxy_sk, timestamp, seed), trailer)


@pytest.mark.parametrize("line", [chunked.SIGNED, chunked.SIGNED_TRAILER])
def test_chunk_signed_64mib_upload_lands_in_moto_with_flat_proxy_memory(
    broker: Broker, line: str
) -> None:
    data = os.urandom(64 * MIB)
    trailer = "x-amz-checksum-sha256" if line == chunked.SIGNED_TRAILER else None
    with _peak_rss(broker) as peak:
        status, answer = _raw_put(
            broker, "moto", f"signed-{line[-7:]}", None, len(data), line, trailer, data
        )
    assert status == 200, answer
    assert peak["growth"] < 60 * MIB, f"proxy RSS grew by {peak['growth'] / MIB:.1f} MiB"
    stored = _stored(broker, f"signed-{line[-7:]}")
    assert stored is not None and _sha(stored) == _sha(data)


def test_a_tampered_middle_chunk_is_a_401_and_nothing_is_stored(broker: Broker) -> None:
    data = os.urandom(2 * MIB)
    status, answer = _raw_put(
        broker, "moto", "tampered", None, len(data), chunked.SIGNED, None, data, tamper_at=MIB
    )
    assert status == 401, answer
    assert b"ValidateCredentialErr" in answer or b"SignatureDoesNotMatch" in answer
    assert _stored(broker, "tampered") is None
