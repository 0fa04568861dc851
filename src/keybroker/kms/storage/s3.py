"""Amazon S3 (and S3-compatible stores) as DEK storage.

URI: ``storage://aws?bucket=&region=&accessKeyID=&accessKey=`` plus an optional ``endpoint=``
for emulators and S3-compatible stores.  ``accessKey`` may be a secret reference
(``env:NAME``, ``file:PATH``; see :func:`keybroker.kms.uri.resolve_secret`).

- The bucket is created on first use (or by :meth:`S3Storage.open`) when it is missing; in
  ``us-east-1`` the request carries no ``LocationConstraint`` (S3 rejects one there), in any
  other region it must.
- ``put`` is ``PutObject`` with ``If-None-Match: *``: S3 (and moto) refuse to overwrite, so two
  racing first writers cannot both win; the loser gets ``DEKExists``.
- The SDK retries transient failures.  If a retried ``PutObject`` had in fact been stored, the
  retry sees 412 and reports ``DEKExists``; the KMS then re-reads the blob, which is its own.
- ``replace`` (compare-and-swap, used by rewrap; not part of the Storage protocol) is
  ``PutObject`` with ``If-Match``.  It first tries the ETag S3 gives a single-part upload
  without SSE-KMS, the MD5 of ``old`` — one request in the usual case; if that fails it reads
  the object, compares the bytes and retries with the ETag it read.  A concurrent writer
  makes the write fail with 412, reported as ``False``.
- ``get`` reads at most the blob limit (64 KiB) and one piece more: a larger object (say, one
  planted at a DEK id) is refused with ``IntegrityError`` and never read whole.
- ``delete`` looks the object up first (S3 deletes a missing key without complaint), so a
  concurrent delete of the same id may make both callers succeed.
- A storage built from a URI ignores the environment and the shared config files: bogus
  ``AWS_*`` variables, ``AWS_PROFILE`` or ``AWS_ENDPOINT_URL`` cannot redirect or re-credential it.

The SDK is synchronous; every call runs in a worker thread (boto3 clients are thread-safe).
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import os
import threading
from typing import Any, ClassVar, Self

from keybroker.kms.errors import BackendError, KMSConfigError, MissingExtra
from keybroker.kms.storage import MAX_BLOB_BYTES, validate_blob, validate_key_id
from keybroker.kms.storage._common import (
    ErrorTypes,
    Matcher,
    ThreadedStorage,
    already_stored,
    check_uri,
    not_stored,
    read_bounded,
    sorted_names,
    too_large,
    translate,
)
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    import botocore.session
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("S3 storage needs boto3: install keybroker[aws]") from exc

__all__ = ["S3Storage"]

_URI_PARAMS = ("bucket", "region", "accessKeyID", "accessKey")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})
_BUCKET_RACE_CODES = frozenset({"BucketAlreadyOwnedByYou"})
# 409 ConditionalRequestConflict: another conditional write to the key is in flight; S3 asks
# the caller to retry, after which it sees 412 (the other write won) or succeeds.
_PUT_RETRIES = 3
_SDK_ERRORS: ErrorTypes = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


class S3Storage(ThreadedStorage):
    """Wrapped DEKs as objects in one S3 bucket; the object name is the key id.

    Credentials, in order: an explicit ``client``; an explicit ``session``; explicit
    ``access_key_id``/``secret_access_key``; otherwise boto3's default chain (environment,
    ``~/.aws/credentials`` and ``~/.aws/config``, instance roles).

    Raises ``KMSConfigError`` for invalid arguments and ``MissingExtra`` without boto3.
    """

    name: ClassVar[str] = "aws"
    _service_name: ClassVar[str] = "S3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: Secret | None = None,
        endpoint: str | None = None,
        session: boto3.Session | None = None,
        client: Any = None,
        page_size: int = 1000,
    ) -> None:
        _check_args(bucket, access_key_id, secret_access_key, page_size)
        self.bucket = bucket
        self._page_size = page_size
        self._client = client or _make_client(
            session, region, access_key_id, secret_access_key, endpoint
        )
        self._init_threaded()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Check the parameters of ``storage://aws?...`` alone (no I/O, nothing built).

        Raises ``KMSConfigError`` naming every unknown, missing or empty parameter.
        """
        check_uri(parsed, *_URI_PARAMS)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from ``storage://aws?...`` without touching the network.

        Raises ``KMSConfigError`` naming every missing or unknown parameter, or an
        unresolvable ``accessKey`` reference.
        """
        cls.validate_uri(parsed)
        p = parsed.require(*_URI_PARAMS)
        secret = resolve_secret(p["accessKey"], what=f"{parsed.label} accessKey")
        with _ISOLATED_LOCK:
            client = _make_client(
                _isolated_session(),
                p["region"],
                p["accessKeyID"],
                secret,
                parsed.optional("endpoint"),
                ignore_env_endpoint=True,
            )
        return cls(p["bucket"], client=client)

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, region={self.region!r})"

    @property
    def region(self) -> str:
        """The region the client signs for (and creates the bucket in)."""
        return str(self._client.meta.region_name or "us-east-1")

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-swap: write ``new`` only if the object still holds ``old``; ``False``
        (no change) if it does not.  Raises ``DEKNotFound``, ``BackendError``."""
        validate_key_id(key_id)
        return await self._run(self._replace, key_id, validate_blob(old), validate_blob(new))

    # -- sync halves, run in a worker thread --------------------------------------------------

    def _close_sync(self) -> None:
        self._client.close()

    def _make_ready(self) -> None:
        if not self._bucket_exists():
            self._create_bucket()

    def _bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NO_BUCKET_CODES:
                return False
            raise _backend("HeadBucket", exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _backend("HeadBucket", exc) from exc
        return True

    def _create_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in _BUCKET_RACE_CODES:
                raise _backend("CreateBucket", exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _backend("CreateBucket", exc) from exc

    def _get(self, key_id: str) -> bytes:
        return self._read(key_id)[0]

    def _read(self, key_id: str) -> tuple[bytes, str]:
        """The object's bytes and ETag, read in pieces: an object past the blob limit (by its
        Content-Length or by what arrives) is refused, and its connection dropped unread.
        Raises ``DEKNotFound``, ``IntegrityError``, ``BackendError``."""
        with _translate("GetObject", key_id, not_found=_absent):
            response = self._client.get_object(Bucket=self.bucket, Key=key_id)
            with response["Body"] as body:
                if int(response.get("ContentLength") or 0) > MAX_BLOB_BYTES:
                    raise too_large(key_id)
                return read_bounded(body.read, key_id), str(response["ETag"])

    def _put(self, key_id: str, data: bytes) -> None:
        if not self._conditional_put(key_id, data, IfNoneMatch="*"):
            raise already_stored(key_id)

    def _replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        # MD5 is S3's ETag for a plain upload, not a security check: If-Match only has to
        # recognise our own earlier write; any other ETag falls through to the exact compare.
        guess = '"' + hashlib.md5(old, usedforsecurity=False).hexdigest() + '"'
        if self._put_if_match(key_id, new, guess):
            return True
        current, etag = self._read(key_id)
        return current == old and self._put_if_match(key_id, new, etag)

    def _put_if_match(self, key_id: str, data: bytes, etag: str) -> bool:
        """``PutObject`` with ``If-Match``: ``False`` on 412.  Raises ``DEKNotFound``."""
        return self._conditional_put(key_id, data, IfMatch=etag)

    def _conditional_put(self, key_id: str, data: bytes, **condition: str) -> bool:
        """``PutObject`` with ``condition``: ``False`` on 412 (the condition failed).  Raises
        ``DEKNotFound`` (``If-Match`` on a missing key), ``BackendError``."""
        for attempt in range(_PUT_RETRIES):
            try:
                self._client.put_object(Bucket=self.bucket, Key=key_id, Body=data, **condition)
                return True
            except botocore.exceptions.ClientError as exc:
                code = _code(exc)
                if code == "PreconditionFailed":
                    return False
                if "IfMatch" in condition and code in _NOT_FOUND_CODES:
                    raise not_stored(key_id) from None
                if code != "ConditionalRequestConflict" or attempt == _PUT_RETRIES - 1:
                    raise _backend("PutObject", exc) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise _backend("PutObject", exc) from exc
        return False  # pragma: no cover - the loop returns or raises

    def _delete(self, key_id: str) -> None:
        # S3's DeleteObject succeeds on a missing key; look first so absence is reported.
        with _translate("DeleteObject", key_id, not_found=_absent):
            self._client.head_object(Bucket=self.bucket, Key=key_id)
            self._client.delete_object(Bucket=self.bucket, Key=key_id)

    def _list(self, prefix: str) -> builtins.list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self._page_size}
        )
        with _translate("ListObjectsV2"):
            return sorted_names(obj["Key"] for page in pages for obj in page.get("Contents", ()))


def _check_args(
    bucket: str, access_key_id: str | None, secret: Secret | None, page_size: int
) -> None:
    problems = []
    if not bucket:
        problems.append("bucket is empty")
    if (access_key_id is None) != (secret is None):
        problems.append("access_key_id and secret_access_key must be given together")
    if secret is not None and not isinstance(secret, Secret):
        problems.append("secret_access_key must be a Secret")
    if not 1 <= page_size <= 1000:
        problems.append("page_size must be between 1 and 1000")
    if problems:
        raise KMSConfigError(f"S3 storage: {'; '.join(problems)}")


@functools.cache
def _isolated_session() -> boto3.Session:
    """A session that reads no environment variable and no shared config/credentials file.

    One per process: building a session loads the service models (slow), and sessions are not
    thread-safe, so client creation from it is serialised by ``_ISOLATED_LOCK``.
    """
    blank = (None, None, None, None)
    devnull = (None, None, os.devnull, None)
    core = botocore.session.Session(
        session_vars={"profile": blank, "config_file": devnull, "credentials_file": devnull}
    )
    return boto3.Session(botocore_session=core)


_ISOLATED_LOCK = threading.Lock()


def _make_client(
    session: boto3.Session | None,
    region: str | None,
    access_key_id: str | None,
    secret: Secret | None,
    endpoint: str | None,
    *,
    ignore_env_endpoint: bool = False,
) -> Any:
    options: dict[str, Any] = {  # a dict: some botocore stubs lack the endpoint option
        "retries": {"mode": "standard", "max_attempts": 3},
        "ignore_configured_endpoint_urls": ignore_env_endpoint,
    }
    config = botocore.config.Config(**options)
    kwargs: dict[str, Any] = {"region_name": region, "endpoint_url": endpoint, "config": config}
    if access_key_id is not None and secret is not None:
        kwargs["aws_access_key_id"] = access_key_id
        kwargs["aws_secret_access_key"] = secret.reveal()
    try:
        return (session or boto3.Session()).client("s3", **kwargs)
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise KMSConfigError(f"S3 storage: cannot build the client: {type(exc).__name__}") from exc


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _absent(exc: BaseException) -> bool:
    """S3 says "no such object" with a code (and HEAD, which has no body, with 404 alone)."""
    return isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in _NOT_FOUND_CODES


def _translate(operation: str, key_id: str = "", *, not_found: Matcher = ()) -> translate:
    return translate(operation, _SDK_ERRORS, _backend, key_id=key_id, not_found=not_found)


def _backend(operation: str, exc: Exception) -> BackendError:
    """A BackendError naming the operation and the service's error code, never its message
    (which may echo request details)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return BackendError(f"S3 {operation} failed: {_code(exc) or 'error'} (HTTP {status})")
    return BackendError(f"S3 {operation} failed: {type(exc).__name__}")
