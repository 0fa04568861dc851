"""The clients of the interop matrix: real programs doing one cell's work through keybroker.

Each cell: create a bucket, a multipart upload (the smallest file that is multipart with the
client's threshold set to S3's 5 MiB minimum part: two parts), HEAD, whole and ranged GET,
server-side copy, list, presigned GET (SigV4, fetched by curl), delete; every result checked
byte for byte, every step timed (a stalled connection shows as a slow step).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

__all__ = [
    "CLIENTS",
    "MIB",
    "PART",
    "PRESIGNED_BUCKET",
    "PRESIGNED_KEY",
    "Cell",
    "available",
    "aws_cli",
]

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part but the last
#: each request (one SDK call; one CLI command, its start-up included) must finish in this
STEP_LIMIT = 8.0
RANGE = (PART - 100, PART + 155)  # across the parts' boundary
PRESIGNED_BUCKET, PRESIGNED_KEY = "interop-presigned", "object"


@dataclass
class Cell:
    url: str  # keybroker
    ak: str  # proxy credentials of the upstream's account
    sk: str
    bucket: str
    big: Path  # the multipart file
    data: bytes  # its bytes
    tmp: Path
    upstream: str
    #: moto answers presigned URLs with a 500 when it enforces signatures: a presigned GET goes
    #: to a second account whose upstream is a moto that does not (``PRESIGNED_KEY`` there)
    presign_ak: str = ""
    presign_sk: str = ""
    presigned_data: bytes = b""
    #: key-proxy mode: the upstream's URL (signed for) and keybroker's account name
    origin: str = ""
    account: str = ""
    presign_origin: str = ""  # the presign account's upstream
    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.steps[name] = took
        assert took < STEP_LIMIT, f"{name} took {took:.1f} s"

    def slowest(self) -> str:
        name = max(self.steps, key=self.steps.__getitem__)
        return f"{name} {self.steps[name]:.2f} s"

    def run(self, argv: list[str], env: dict[str, str] | None = None, ok: bool = True) -> str:
        return self.run_bytes(argv, env, ok).decode("utf-8", "replace")

    def run_fails(self, argv: list[str]) -> str | None:
        """Run a command that may fail: its stderr if it did, else None."""
        base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        proc = subprocess.run(argv, env=base, capture_output=True, timeout=STEP_LIMIT * 3)
        return proc.stderr.decode("utf-8", "replace") if proc.returncode else None

    def run_bytes(
        self, argv: list[str], env: dict[str, str] | None = None, ok: bool = True
    ) -> bytes:
        # AWS_CA_BUNDLE (set on some machines) makes rclone refuse a plain-HTTP endpoint
        base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        proc = subprocess.run(
            argv, env={**base, **(env or {})}, capture_output=True, timeout=STEP_LIMIT * 3
        )
        if ok and proc.returncode != 0:
            shown = [a.replace(self.sk, "<proxy secret>") for a in argv]
            err = proc.stderr[-2000:].decode("utf-8", "replace")
            raise AssertionError(f"{shown} exit {proc.returncode}: {err}")
        return proc.stdout

    def check_file(self, path: Path, expected: bytes | None = None) -> None:
        want = self.data if expected is None else expected
        got = path.read_bytes()
        assert (
            len(got) == len(want) and hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
        ), (len(got), len(want))

    def presigned_get_with_curl(self, url: str, sigv2: bool = False) -> None:
        """Fetch the client's presigned URL for ``PRESIGNED_KEY`` (see ``presign_ak``)."""
        if sigv2:
            assert "Signature=" in url and "AWSAccessKeyId=" in url, "not a SigV2 URL"
        else:
            assert "X-Amz-Signature=" in url and "X-Amz-Credential=" in url, "not a SigV4 URL"
        out = self.tmp / "presigned"
        with self.step("presigned GET (curl)"):
            self.run(["curl", "-sS", "--fail-with-body", "-o", str(out), url])
        self.check_file(out, self.presigned_data)
        out.unlink()


def available(program: str) -> bool:
    return shutil.which(program) is not None


def aws_cli() -> list[str] | None:
    """The AWS CLI v1 (``awscli``) of this environment."""
    exe = Path(sys.executable).parent / "aws"
    return [str(exe)] if exe.exists() else None


# ------------------------------------------------------------------ boto3


def _boto3(cell: Cell, keyproxy: bool = False):  # type: ignore[no-untyped-def]
    client = boto3.client(
        "s3",
        endpoint_url=cell.origin if keyproxy else cell.url,
        region_name="us-east-1",
        aws_access_key_id=cell.ak,
        aws_secret_access_key=cell.sk,
        config=BotoConfig(
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            # moto copies a multipart object's composite CRC32 ("...-2") to a copy as a plain
            # one, which boto3 would then reject; the bytes are compared here instead
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=STEP_LIMIT,
        ),
    )
    if keyproxy:
        client.meta.events.register(
            "before-send.s3", lambda request, **_: _via_keybroker(cell, request)
        )
    return client


def _via_keybroker(cell: Cell, request) -> None:  # type: ignore[no-untyped-def]
    """key-proxy mode, as a platform does it: the request stays signed for the upstream's URL
    and goes to keybroker with the X-Mcdn headers naming the origin and the account."""
    auth = request.headers["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    kept = ["authorization", *(h for h in signed.split(";") if h != "host"), "content-length"]
    request.headers["X-Mcdn-Origin-Uri"] = request.url
    request.headers["X-Mcdn-Cloud-Account-Name"] = cell.account
    request.headers["X-Mcdn-Kept-Headers"] = ",".join(kept)
    request.url = cell.url + "/"


def run_boto3(cell: Cell, keyproxy: bool = False) -> None:
    s3, b = _boto3(cell, keyproxy), cell.bucket
    with cell.step("create bucket"):
        s3.create_bucket(Bucket=b)
    with cell.step("multipart upload"):
        s3.upload_file(
            str(cell.big),
            b,
            "big",
            Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART),
        )
    with cell.step("HEAD"):
        head = s3.head_object(Bucket=b, Key="big")
    assert head["ContentLength"] == len(cell.data) and head["ETag"].endswith('-2"')
    with cell.step("GET"):
        got = s3.get_object(Bucket=b, Key="big")["Body"].read()
    assert got == cell.data
    lo, hi = RANGE
    with cell.step("ranged GET"):
        part = s3.get_object(Bucket=b, Key="big", Range=f"bytes={lo}-{hi}")
        piece = part["Body"].read()
    assert piece == cell.data[lo : hi + 1] and part["ContentRange"].endswith(f"/{len(cell.data)}")
    with cell.step("conditional GET (304)"):
        try:
            s3.get_object(Bucket=b, Key="big", IfNoneMatch=head["ETag"])
            raise AssertionError("no 304")
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with cell.step("server-side copy"):
        s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "big"})
    with cell.step("GET copy"):
        assert s3.get_object(Bucket=b, Key="copy")["Body"].read() == cell.data
    with cell.step("list"):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["big", "copy"]
    if not keyproxy:
        cell.presigned_get_with_curl(presign_boto3(cell))
    if cell.upstream == "raw-chunked":
        with cell.step("early 4xx"):
            try:
                s3.put_object(Bucket=b, Key="early-4xx", Body=cell.data[: 2 * MIB])
                raise AssertionError("no 403")
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with cell.step("delete"):
        s3.delete_object(Bucket=b, Key="big")
        s3.delete_object(Bucket=b, Key="copy")
        s3.delete_bucket(Bucket=b)
    again = b + "-again"  # (the same request twice in a second has the same signature)
    with cell.step("put after delete"):  # a 204 (with close, from moto) then a new request
        s3.create_bucket(Bucket=again)
        s3.put_object(Bucket=again, Key="small", Body=b"small")
        s3.delete_object(Bucket=again, Key="small")
        s3.delete_bucket(Bucket=again)


def presign_boto3(cell: Cell) -> str:
    s3 = boto3.client(
        "s3",
        endpoint_url=cell.url,
        region_name="us-east-1",
        aws_access_key_id=cell.presign_ak,
        aws_secret_access_key=cell.presign_sk,
        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    return str(
        s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": PRESIGNED_BUCKET, "Key": PRESIGNED_KEY},
            ExpiresIn=300,
        )
    )


# ------------------------------------------------------------------ AWS CLI v1


def run_aws_cli(cell: Cell) -> None:
    cfg = cell.tmp / "aws-config"
    cfg.write_text(
        "[default]\nregion = us-east-1\nresponse_checksum_validation = when_required\n"
        "s3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n"
        "  addressing_style = path\n  signature_version = s3v4\n"
    )
    env = {
        "AWS_CONFIG_FILE": str(cfg),
        "AWS_SHARED_CREDENTIALS_FILE": str(cell.tmp / "none"),
        "AWS_ACCESS_KEY_ID": cell.ak,
        "AWS_SECRET_ACCESS_KEY": cell.sk,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with _AwsCli(cell) as runner:

        def aws(*args: str) -> str:
            return runner(["--endpoint-url", cell.url, *args], env)

        runner(["--version"], env)  # the imports, before the timed steps
        _aws_cell(cell, aws, runner, env)


class _AwsCli:
    """The AWS CLI's commands run one after another by tests/interop/aws_runner.py."""

    def __init__(self, cell: Cell) -> None:
        base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        root = str(Path(__file__).resolve().parents[2])
        base["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [base.get("PYTHONPATH")])])
        self.cell = cell
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.interop.aws_runner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=base,
            text=True,
        )

    def __call__(self, argv: list[str], env: dict[str, str]) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if answer["rc"] != 0:
            shown = [a.replace(self.cell.sk, "<proxy secret>") for a in argv]
            raise AssertionError(f"aws {shown} exit {answer['rc']}: {answer['err'][-2000:]}")
        return str(answer["out"])

    def __enter__(self) -> _AwsCli:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _aws_cell(cell: Cell, aws: Callable[..., str], runner: _AwsCli, env: dict[str, str]) -> None:
    b = cell.bucket

    with cell.step("create bucket"):
        aws("s3", "mb", f"s3://{b}")
    with cell.step("multipart upload"):
        aws("s3", "cp", str(cell.big), f"s3://{b}/big")
    with cell.step("HEAD"):
        head = json.loads(aws("s3api", "head-object", "--bucket", b, "--key", "big"))
    assert head["ContentLength"] == len(cell.data) and head["ETag"].endswith('-2"')
    out = cell.tmp / "out"
    with cell.step("GET (ranged parts in parallel)"):
        aws("s3", "cp", f"s3://{b}/big", str(out))
    cell.check_file(out)
    lo, hi = RANGE
    with cell.step("ranged GET"):
        aws(
            "s3api",
            "get-object",
            "--bucket",
            b,
            "--key",
            "big",
            "--range",
            f"bytes={lo}-{hi}",
            str(out),
        )
    cell.check_file(out, cell.data[lo : hi + 1])
    with cell.step("server-side copy (multipart copy)"):
        aws("s3", "cp", f"s3://{b}/big", f"s3://{b}/copy")
    with cell.step("GET copy (whole)"):
        aws("s3api", "get-object", "--bucket", b, "--key", "copy", str(out))
    cell.check_file(out)
    with cell.step("list"):
        listing = aws("s3", "ls", f"s3://{b}/")
    assert [line.split()[-1] for line in listing.splitlines()] == ["big", "copy"]
    presigner = {
        **env,
        "AWS_ACCESS_KEY_ID": cell.presign_ak,
        "AWS_SECRET_ACCESS_KEY": cell.presign_sk,
    }
    with cell.step("presign"):
        url = runner(
            [
                "--endpoint-url",
                cell.url,
                "s3",
                "presign",
                "--expires-in",
                "300",
                f"s3://{PRESIGNED_BUCKET}/{PRESIGNED_KEY}",
            ],
            presigner,
        ).strip()
    cell.presigned_get_with_curl(url)
    legacy = cell.tmp / "aws-config-default-presign"  # the CLI v1's own choice: S3 SigV2
    legacy.write_text("[default]\nregion = us-east-1\n")
    with cell.step("presign (default: S3 SigV2)"):
        url = runner(
            [
                "--endpoint-url",
                cell.url,
                "s3",
                "presign",
                "--expires-in",
                "300",
                f"s3://{PRESIGNED_BUCKET}/{PRESIGNED_KEY}",
            ],
            {**presigner, "AWS_CONFIG_FILE": str(legacy)},
        ).strip()
    cell.presigned_get_with_curl(url, sigv2=True)
    with cell.step("delete (rb --force: list, delete objects, delete bucket)"):
        aws("s3", "rb", "--force", f"s3://{b}")


# ------------------------------------------------------------------ s3cmd


def run_s3cmd(cell: Cell, sigv2: bool = False) -> None:
    """s3cmd with SigV4 (its default), or with S3 SigV2 for every request (``sigv2``)."""
    host = cell.url.removeprefix("http://")
    cfg = cell.tmp / "s3cmd.cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {cell.ak}\nsecret_key = {cell.sk}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        f"use_https = False\nsignature_v2 = {sigv2}\nbucket_location = us-east-1\n"
        "multipart_chunk_size_mb = 5\nmax_retries = 1\nsocket_timeout = 10\n"
        "check_ssl_certificate = False\nguess_mime_type = False\nprogress_meter = False\n"
    )
    b = cell.bucket

    def s3cmd(*args: str) -> str:
        return cell.run(["s3cmd", "-c", str(cfg), "--no-progress", *args])

    with cell.step("create bucket"):
        s3cmd("mb", f"s3://{b}")
    with cell.step("multipart upload"):
        s3cmd("put", str(cell.big), f"s3://{b}/big")
    # (s3cmd info reads the ACL too, which moto answers with a 500 when it enforces
    # signatures; get starts with the HEAD)
    with cell.step("server-side copy"):
        # (--acl-private: cp would copy the ACL, and moto answers GET ?acl with a 500 when it
        # enforces signatures)
        s3cmd("cp", "--acl-private", f"s3://{b}/big", f"s3://{b}/copy")
    with cell.step("list"):
        listing = s3cmd("ls", f"s3://{b}")
    assert [line.split()[-1] for line in listing.splitlines()] == [
        f"s3://{b}/big",
        f"s3://{b}/copy",
    ]
    out = cell.tmp / "out"
    if cell.upstream.startswith("raw-"):
        # s3cmd 2.3 reads a GET answer's Content-Length (KeyError without it); these upstreams
        # send bodies chunked or delimited by the close, and keybroker passes that on: either
        # s3cmd fails for that reason, or (a later s3cmd) gets the bytes right
        with cell.step("GET (no Content-Length)"):
            err = cell.run_fails(
                ["s3cmd", "-c", str(cfg), "--no-progress", "get", f"s3://{b}/big", str(out)]
            )
        if err is None:
            cell.check_file(out)
        else:
            assert "content-length" in err, err
    else:
        with cell.step("GET (HEAD then GET)"):
            s3cmd("get", "--force", f"s3://{b}/big", str(out))
        cell.check_file(out)
        lo = RANGE[0]
        out.write_bytes(cell.data[:lo])  # --continue asks for the rest: Range: bytes=lo-
        with cell.step("ranged GET (--continue)"):
            s3cmd("get", "--continue", f"s3://{b}/big", str(out))
        cell.check_file(out)
        out.unlink()
        with cell.step("GET copy"):
            s3cmd("get", f"s3://{b}/copy", str(out))
        cell.check_file(out)
    # s3cmd signurl makes S3 SigV2 URLs only: the SigV4 presigned GET is boto3's, fetched by curl
    cell.presigned_get_with_curl(presign_boto3(cell))
    signer = cell.tmp / "s3cmd-presign.cfg"
    signer.write_text(
        cfg.read_text().replace(cell.ak, cell.presign_ak).replace(cell.sk, cell.presign_sk)
    )
    with cell.step("signurl (S3 SigV2)"):
        url = cell.run(
            [
                "s3cmd",
                "-c",
                str(signer),
                "signurl",
                f"s3://{PRESIGNED_BUCKET}/{PRESIGNED_KEY}",
                "+300",
            ]
        ).strip()
    cell.presigned_get_with_curl(url, sigv2=True)
    with cell.step("delete"):
        s3cmd("del", f"s3://{b}/big", f"s3://{b}/copy")
    with cell.step("delete bucket"):
        s3cmd("rb", f"s3://{b}")


# ------------------------------------------------------------------ rclone


def run_rclone(cell: Cell) -> None:
    env = {
        "RCLONE_CONFIG": str(cell.tmp / "rclone.conf"),
        "RCLONE_CONFIG_KB_TYPE": "s3",
        "RCLONE_CONFIG_KB_PROVIDER": "Other",
        "RCLONE_CONFIG_KB_ACCESS_KEY_ID": cell.ak,
        "RCLONE_CONFIG_KB_SECRET_ACCESS_KEY": cell.sk,
        "RCLONE_CONFIG_KB_ENDPOINT": cell.url,
        "RCLONE_CONFIG_KB_REGION": "us-east-1",
        "RCLONE_CONFIG_KB_FORCE_PATH_STYLE": "true",
    }
    (cell.tmp / "rclone.conf").write_text("")
    flags = [
        "--retries",
        "1",
        "--low-level-retries",
        "1",
        "--timeout",
        "10s",
        "--contimeout",
        "5s",
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
        # rclone sends CreateBucket again in every command (unless told the bucket exists):
        # the same signed PUT twice within a second, which the replay protection refuses
        "--s3-no-check-bucket",
    ]
    b = cell.bucket

    def rclone(*args: str) -> str:
        return cell.run(["rclone", *flags, *args], env)

    with cell.step("create bucket"):
        cell.run(
            ["rclone", *[f for f in flags if f != "--s3-no-check-bucket"], "mkdir", f"kb:{b}"], env
        )
    with cell.step("multipart upload"):
        # (--s3-no-head: rclone then asks HEAD ?versionId=null, which moto answers with a 400)
        rclone("copyto", "--s3-no-head", str(cell.big), f"kb:{b}/big")
    with cell.step("HEAD"):
        info = json.loads(rclone("lsjson", "--stat", f"kb:{b}/big"))
    assert info["Size"] == len(cell.data)
    out = cell.tmp / "out"
    with cell.step("GET"):
        rclone("copyto", f"kb:{b}/big", str(out))
    cell.check_file(out)
    out.unlink()
    with cell.step("GET (ranged, multi-thread)"):
        rclone(
            "copyto",
            "--multi-thread-cutoff",
            "1M",
            "--multi-thread-streams",
            "2",
            f"kb:{b}/big",
            str(out),
        )
    cell.check_file(out)
    lo, hi = RANGE
    with cell.step("ranged GET"):
        piece = cell.run_bytes(
            [
                "rclone",
                *flags,
                "cat",
                "--offset",
                str(lo),
                "--count",
                str(hi - lo + 1),
                f"kb:{b}/big",
            ],
            env,
        )
    assert piece == cell.data[lo : hi + 1]
    with cell.step("server-side copy"):
        rclone("copyto", f"kb:{b}/big", f"kb:{b}/copy")
    with cell.step("check"):
        rclone("check", "--download", str(cell.big.parent), f"kb:{b}", "--include", "big")
    with cell.step("list"):
        listing = rclone("lsf", f"kb:{b}")
    assert listing.split() == ["big", "copy"]
    presigner = {
        **env,
        "RCLONE_CONFIG_KB_ACCESS_KEY_ID": cell.presign_ak,
        "RCLONE_CONFIG_KB_SECRET_ACCESS_KEY": cell.presign_sk,
    }
    with cell.step("presign (link)"):
        url = cell.run(
            ["rclone", *flags, "link", "--expire", "5m", f"kb:{PRESIGNED_BUCKET}/{PRESIGNED_KEY}"],
            presigner,
        ).strip()
    cell.presigned_get_with_curl(url)
    for key in ("big", "copy"):
        with cell.step(f"delete {key}"):
            rclone("deletefile", f"kb:{b}/{key}")
    with cell.step("delete bucket"):
        rclone("rmdir", f"kb:{b}")


# ------------------------------------------------------------------ curl (--aws-sigv4)


def run_curl(cell: Cell, keyproxy: bool = False) -> None:
    """curl ``--aws-sigv4`` natively, or in key-proxy mode (``keyproxy``): signed for the
    upstream's URL and sent to keybroker with the X-Mcdn headers (see ``_curl_keyproxy``)."""
    b, base = cell.bucket, cell.origin if keyproxy else cell.url
    sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{cell.ak}:{cell.sk}"]

    def curl(*args: str, ok: bool = True) -> str:
        route = _curl_keyproxy(cell, cell.account, list(args)) if keyproxy else []
        return cell.run(["curl", "-sS", "--max-time", str(STEP_LIMIT), *sig, *route, *args], ok=ok)

    # curl 7.88 signs a query parameter without a value as "uploads", S3 as "uploads=": the
    # URLs here spell every parameter with its "="

    def sha(data: bytes) -> list[str]:
        # curl signs the payload's SHA-256 only when told the header: S3 wants it
        return ["-H", f"x-amz-content-sha256: {hashlib.sha256(data).hexdigest()}"]

    empty = sha(b"")
    # (curl's default Content-Type for a body is a form, which moto's Werkzeug then reads as
    # one: the object would be stored empty)
    octets = ["-H", "Content-Type: application/octet-stream"]
    with cell.step("create bucket"):
        curl("--fail-with-body", "-X", "PUT", *empty, f"{base}/{b}")
    parts = [cell.data[:PART], cell.data[PART:]]
    with cell.step("multipart upload"):
        start = curl("--fail-with-body", "-X", "POST", *empty, f"{base}/{b}/big?uploads=")
        upload = quote(start.split("<UploadId>")[1].split("</UploadId>")[0], safe="")
        etags = []
        for n, part in enumerate(parts, 1):
            path = cell.tmp / f"part{n}"
            path.write_bytes(part)
            head = curl(
                "--fail-with-body",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                *sha(part),
                *octets,
                "--data-binary",
                f"@{path}",
                f"{base}/{b}/big?partNumber={n}&uploadId={upload}",
            )
            etags.append(
                next(
                    line.split(":", 1)[1].strip()
                    for line in head.splitlines()
                    if line.lower().startswith("etag:")
                )
            )
        done = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
                for n, e in enumerate(etags, 1)
            )
            + "</CompleteMultipartUpload>"
        )
        curl(
            "--fail-with-body",
            "-X",
            "POST",
            *sha(done.encode()),
            *octets,
            "--data-binary",
            done,
            f"{base}/{b}/big?uploadId={upload}",
        )
    with cell.step("HEAD"):
        head = curl("--fail-with-body", "-I", *empty, f"{base}/{b}/big")
    assert f"content-length: {len(cell.data)}" in head.lower(), head
    out = cell.tmp / "out"
    with cell.step("GET"):
        curl("--fail-with-body", *empty, "-o", str(out), f"{base}/{b}/big")
    cell.check_file(out)
    lo, hi = RANGE
    with cell.step("ranged GET"):
        # (a Range header, not -r: curl signs -H headers only, and key-proxy mode forwards
        # signed headers only)
        rng = ["-H", f"Range: bytes={lo}-{hi}"]
        curl("--fail-with-body", *empty, *rng, "-o", str(out), f"{base}/{b}/big")
    cell.check_file(out, cell.data[lo : hi + 1])
    etag = next(
        line.split(":", 1)[1].strip()
        for line in head.splitlines()
        if line.lower().startswith("etag:")
    )
    with cell.step("conditional GET (304)"):
        status = curl(
            *empty,
            "-H",
            f"If-None-Match: {etag}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"{base}/{b}/big",
        )
    assert status == "304", status
    with cell.step("server-side copy"):
        curl(
            "--fail-with-body",
            "-X",
            "PUT",
            *empty,
            "-H",
            f"x-amz-copy-source: /{b}/big",
            f"{base}/{b}/copy",
        )
    with cell.step("GET copy"):
        curl("--fail-with-body", *empty, "-o", str(out), f"{base}/{b}/copy")
    cell.check_file(out)
    with cell.step("list"):
        listing = curl("--fail-with-body", *empty, f"{base}/{b}?list-type=2")
    assert [k.split("</Key>")[0] for k in listing.split("<Key>")[1:]] == ["big", "copy"]
    if keyproxy:
        _presigned_get_keyproxy(cell)
        with cell.step("X-Mcdn headers signed: refused"):
            _refused_signed_control_headers(cell, sig + empty, f"{base}/{b}/big")
    else:
        cell.presigned_get_with_curl(presign_boto3(cell))
    if cell.upstream == "raw-chunked":
        body = cell.data[: 2 * MIB]
        (cell.tmp / "early").write_bytes(body)
        with cell.step("early 4xx"):
            status = curl(
                "-X",
                "PUT",
                *sha(body),
                *octets,
                "--data-binary",
                f"@{cell.tmp / 'early'}",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{base}/{b}/early-4xx",
                ok=False,
            )
        assert status == "403", status
    with cell.step("delete"):
        for key in ("big", "copy"):
            curl("--fail-with-body", "-X", "DELETE", *empty, f"{base}/{b}/{key}")
        curl("--fail-with-body", "-X", "DELETE", *empty, f"{base}/{b}")


def _curl_keyproxy(cell: Cell, account: str, args: list[str]) -> list[str]:
    """key-proxy mode with curl: keybroker is curl's HTTP proxy, so curl signs for the URL it
    is given (the upstream's, its Host included) and sends it to keybroker in absolute form.
    The X-Mcdn headers go as ``--proxy-header``: curl (< 8.17, no
    ``--aws-sigv4-signedheaders``) signs every ``-H`` header, and key-proxy verifies without
    its control headers, so a signature over them never verifies (see
    ``_refused_signed_control_headers``).  Kept: what curl signed, and the body's length."""
    url = args[-1]
    names = [a.split(":", 1)[0].strip().lower() for a, h in zip(args[1:], args) if h == "-H"]
    kept = ["authorization", "x-amz-date", *names]
    if "--data-binary" in args:
        kept.append("content-length")
    return [
        "--proxy",
        cell.url,
        "--proxy-header",
        f"X-Mcdn-Origin-Uri: {url}",
        "--proxy-header",
        f"X-Mcdn-Cloud-Account-Name: {account}",
        "--proxy-header",
        f"X-Mcdn-Kept-Headers: {','.join(kept)}",
    ]


def _refused_signed_control_headers(cell: Cell, sig: list[str], url: str) -> None:
    """The X-Mcdn headers as ``-H`` (curl then signs them, and they are kept too) and the
    request to keybroker by ``--connect-to`` (so the signed Host is still the upstream's).
    key-proxy deletes its control headers before it verifies, kept or not, so such a signature
    never verifies there; keybroker refuses it the same way, before anything goes upstream."""
    origin = url.removeprefix("http://").split("/", 1)[0]
    control = {
        "X-Mcdn-Origin-Uri": url,
        "X-Mcdn-Cloud-Account-Name": cell.account,
        "X-Mcdn-Kept-Headers": "authorization,x-amz-date,x-amz-content-sha256,"
        "x-mcdn-origin-uri,x-mcdn-cloud-account-name,x-mcdn-kept-headers",
    }
    out = cell.tmp / "refused"
    argv = ["curl", "-sS", "--max-time", str(STEP_LIMIT), *sig, "-w", "%{http_code}"]
    argv += ["--connect-to", f"{origin}:{cell.url.removeprefix('http://')}", "-o", str(out)]
    argv += [a for name, value in control.items() for a in ("-H", f"{name}: {value}")]
    status = cell.run([*argv, url])
    error = json.loads(out.read_text())["ResponseMetadata"]["Error"]
    assert (status, error["Code"]) == ("401", "Proxy.ValidateCredentialErr"), (status, error)
    out.unlink()


def _presigned_get_keyproxy(cell: Cell) -> None:
    """key-proxy mode, a presigned URL: boto3 presigns for the presign account's upstream, curl
    sends it to keybroker (its proxy) with that URL as ``X-Mcdn-Origin-Uri``."""
    s3 = boto3.client(
        "s3",
        endpoint_url=cell.presign_origin,
        region_name="us-east-1",
        aws_access_key_id=cell.presign_ak,
        aws_secret_access_key=cell.presign_sk,
        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    url = str(
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": PRESIGNED_BUCKET, "Key": PRESIGNED_KEY}, ExpiresIn=300
        )
    )
    assert "X-Amz-Signature=" in url, "not a SigV4 URL"
    out = cell.tmp / "presigned"
    args = ["--fail-with-body", "-o", str(out), url]
    with cell.step("presigned GET (curl)"):
        cell.run(["curl", "-sS", *_curl_keyproxy(cell, "interop-presign", args), *args])
    cell.check_file(out, cell.presigned_data)
    out.unlink()


CLIENTS = [
    "boto3",
    "boto3-keyproxy",
    "aws-cli",
    "s3cmd",
    "s3cmd-sigv2",
    "rclone",
    "curl",
    "curl-keyproxy",
]
