"""Google Cloud Storage as DEK storage.

URI: ``storage://gcp?projectID=&bucket=&credentialsPath=`` plus an optional ``endpoint=``
(an emulator or a private endpoint).  ``credentialsPath`` names a service-account key file.

- The bucket is created in ``projectID`` on first use (or by :meth:`GCSStorage.open`) when it
  is missing.
- ``put`` uploads with ``ifGenerationMatch=0``: GCS refuses to overwrite, so two racing first
  writers cannot both win; the loser gets ``DEKExists``.  The upload is one request whose
  response is checked (Constellation's Go code ignored the writer's close error and reported
  success when the commit failed).
- The SDK retries transient failures of the conditional upload.  If a retried upload had in
  fact been stored, the retry sees 412 and reports ``DEKExists``; the KMS then re-reads the
  blob, which is its own.
- Reads stream into a sink that stops past the blob limit (64 KiB): a larger object (say, one
  planted at a DEK id) is refused with ``IntegrityError`` and never read whole.
- ``replace`` (compare-and-swap, used by rewrap; not part of the Storage protocol) downloads the
  object with its generation, compares the bytes and uploads with ``ifGenerationMatch=`` that
  generation: a concurrent writer (or delete) makes the upload fail with 412, reported as
  ``False``, and a missing object is ``DEKNotFound``: replace never creates one.  A retried
  upload that had in fact been stored also sees 412; rewrap then re-reads its own blob.
- A storage built from a URI always passes the endpoint, credentials and project explicitly, so
  ``STORAGE_EMULATOR_HOST``, ``API_ENDPOINT_OVERRIDE``, ``GOOGLE_CLOUD_PROJECT`` and
  ``GOOGLE_APPLICATION_CREDENTIALS`` cannot redirect or re-credential it.

The SDK is synchronous; every call runs in a worker thread.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Self, cast

from keybroker.kms.errors import BackendError, KMSConfigError, MissingExtra
from keybroker.kms.storage import validate_blob, validate_key_id
from keybroker.kms.storage._common import (
    BoundedSink,
    ErrorTypes,
    ThreadedStorage,
    check_uri,
    sorted_names,
    translate,
)
from keybroker.kms.uri import ParsedURI

try:
    import google.auth.exceptions
    from google.api_core import exceptions as gexc
    from google.auth.credentials import Credentials
    from google.cloud import storage as gcs
    from google.cloud.storage import exceptions as media_exc
    from google.oauth2 import service_account
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("GCS storage needs google-cloud-storage: install keybroker[gcp]") from exc

__all__ = ["DEFAULT_ENDPOINT", "GCSStorage"]

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_URI_PARAMS = ("projectID", "bucket", "credentialsPath")
# Transport failures (refused connection, token refresh) and media-layer errors (a download
# whose checksum does not match) are not GoogleAPIError.
_SDK_ERRORS: tuple[type[Exception], ...] = (
    gexc.GoogleAPIError,
    google.auth.exceptions.GoogleAuthError,
    media_exc.InvalidResponse,
    media_exc.DataCorruption,
    OSError,
)


class GCSStorage(ThreadedStorage):
    """Wrapped DEKs as objects in one GCS bucket; the object name is the key id.

    Credentials, in order: an explicit ``client``; explicit ``credentials``; a service-account
    key file ``credentials_path``; otherwise Application Default Credentials
    (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, the metadata server).

    Raises ``KMSConfigError`` for invalid arguments or an unreadable key file, and
    ``MissingExtra`` without google-cloud-storage.
    """

    name: ClassVar[str] = "gcp"
    _service_name: ClassVar[str] = "GCS"

    def __init__(
        self,
        bucket: str,
        *,
        project: str | None = None,
        credentials: Credentials | None = None,
        credentials_path: str | None = None,
        endpoint: str | None = None,
        location: str | None = None,
        client: gcs.Client | None = None,
        page_size: int = 1000,
    ) -> None:
        _check_args(bucket, credentials, credentials_path, page_size)
        if credentials_path is not None:
            credentials = _load_key_file(credentials_path)
        self.bucket = bucket
        self.location = location
        self._page_size = page_size
        self._client = client or _make_client(project, credentials, endpoint)
        self._bucket = self._client.bucket(bucket)
        self._init_threaded()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Check the parameters of ``storage://gcp?...`` alone (no I/O, nothing built).

        Raises ``KMSConfigError`` naming every unknown, missing or empty parameter.
        """
        check_uri(parsed, *_URI_PARAMS)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from ``storage://gcp?...`` without touching the network (the key file is
        read, no token is fetched).

        Raises ``KMSConfigError`` naming every missing or unknown parameter, or when the key
        file cannot be read.
        """
        cls.validate_uri(parsed)
        p = parsed.require(*_URI_PARAMS)
        endpoint = parsed.optional("endpoint", DEFAULT_ENDPOINT)
        return cls(
            p["bucket"],
            project=p["projectID"],
            credentials_path=p["credentialsPath"],
            endpoint=endpoint,
        )

    def __repr__(self) -> str:
        return f"GCSStorage(bucket={self.bucket!r}, project={self.project!r})"

    @property
    def project(self) -> str | None:
        """The project buckets are created in."""
        return self._client.project  # type: ignore[no-any-return]

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
            self._bucket.reload()
        except gexc.NotFound:
            return False
        except _SDK_ERRORS as exc:
            raise _backend("buckets.get", exc) from exc
        return True

    def _create_bucket(self) -> None:
        try:
            self._client.create_bucket(self.bucket, location=self.location)
        except gexc.Conflict:
            pass  # created by a concurrent process since we looked: just as good
        except _SDK_ERRORS as exc:
            raise _backend("buckets.insert", exc) from exc

    def _get(self, key_id: str) -> bytes:
        return self._read(key_id)[0]

    def _put(self, key_id: str, data: bytes) -> None:
        blob = self._bucket.blob(key_id)
        with _translate("objects.insert", key_id, exists=(gexc.PreconditionFailed,)):
            blob.upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=0
            )

    def _replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        current, generation = self._read(key_id)
        if current != old:
            return False
        blob = self._bucket.blob(key_id)
        with _translate("objects.insert", key_id):
            try:
                blob.upload_from_string(
                    new, content_type="application/octet-stream", if_generation_match=generation
                )
            except gexc.PreconditionFailed:
                return False  # rewritten or deleted since we read it
        return True

    def _read(self, key_id: str) -> tuple[bytes, int]:
        """The object's bytes and generation, streamed into a bounded sink: an object past
        the blob limit aborts the download.  Raises ``DEKNotFound``, ``IntegrityError``,
        ``BackendError``."""
        blob = self._bucket.blob(key_id)
        sink = BoundedSink(key_id)
        with _translate("objects.get", key_id, not_found=(gexc.NotFound,)):
            blob.download_to_file(sink)
            data = sink.getvalue()
        # the generation comes from the download's response headers; without it the upload
        # would be unconditional
        if blob.generation is None:
            raise BackendError("GCS objects.get failed: no generation in the response")
        return data, int(blob.generation)

    def _delete(self, key_id: str) -> None:
        with _translate("objects.delete", key_id, not_found=(gexc.NotFound,)):
            self._bucket.blob(key_id).delete()

    def _list(self, prefix: str) -> builtins.list[str]:
        with _translate("objects.list"):
            blobs = self._client.list_blobs(
                self.bucket, prefix=prefix or None, page_size=self._page_size
            )
            return sorted_names(blob.name for blob in blobs)


def _check_args(
    bucket: str, credentials: Credentials | None, credentials_path: str | None, page_size: int
) -> None:
    problems = []
    if not bucket:
        problems.append("bucket is empty")
    if credentials is not None and credentials_path is not None:
        problems.append("give credentials or credentials_path, not both")
    if credentials_path == "":
        problems.append("credentials_path is empty")
    if not 1 <= page_size <= 1000:
        problems.append("page_size must be between 1 and 1000")
    if problems:
        raise KMSConfigError(f"GCS storage: {'; '.join(problems)}")


def _load_key_file(path: str) -> Credentials:
    """Service-account credentials from a JSON key file.  Raises ``KMSConfigError`` that names
    the path and the reason, never the file's contents."""
    try:
        creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            path, scopes=_SCOPES
        )
        return cast(Credentials, creds)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KMSConfigError(
            f"GCS storage: cannot read credentials file {path}: {reason}"
        ) from None
    except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError):
        raise KMSConfigError(
            f"GCS storage: credentials file {path} is not a service-account key"
        ) from None


def _make_client(
    project: str | None, credentials: Credentials | None, endpoint: str | None
) -> gcs.Client:
    kwargs: dict[str, Any] = {"credentials": credentials}
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    if project is not None:  # the SDK reads an explicit None as "no project", not "default"
        kwargs["project"] = project
    try:
        return gcs.Client(**kwargs)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise KMSConfigError(
            "GCS storage: no credentials given and Application Default Credentials not found"
        ) from exc
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise KMSConfigError(f"GCS storage: cannot build the client: {type(exc).__name__}") from exc


def _backend(operation: str, exc: Exception) -> BackendError:
    """A BackendError naming the operation and the HTTP status, never the service's message."""
    code = getattr(exc, "code", None)
    detail = f"HTTP {code}" if isinstance(code, int) else type(exc).__name__
    return BackendError(f"GCS {operation} failed: {detail}")


def _translate(
    operation: str, key_id: str = "", *, not_found: ErrorTypes = (), exists: ErrorTypes = ()
) -> translate:
    return translate(
        operation, _SDK_ERRORS, _backend, key_id=key_id, not_found=not_found, exists=exists
    )
