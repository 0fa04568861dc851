"""GCSStorage against a real fake-gcs-server: the conformance suite plus GCS-specific behaviour.

Service-account credentials are exchanged for tokens at a protocol fake of Google's token
endpoint (``FakeGoogleTokenServer``), which checks the signed JWT assertion.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from keybroker.kms.errors import BackendError, DEKExists, KMSConfigError
from keybroker.kms.registry import storage_from_uri
from keybroker.kms.storage.gcs import GCSStorage
from keybroker.kms.uri import parse_uri
from tests.servers import free_port
from tests.storage.cloud_servers import FakeGoogleTokenServer
from tests.storage.conformance import (
    StorageConformance,
    oversized_objects_refused,
    threads_race_one_wins,
)


def new_bucket() -> str:
    return f"kb-{uuid.uuid4().hex}"


def admin(url: str) -> gcs.Client:
    """A plain SDK client to look at the emulator's state independently of the code under test."""
    return gcs.Client(
        project="admin", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )


def anonymous(url: str, bucket: str, **kw: object) -> GCSStorage:
    return GCSStorage(
        bucket,
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        endpoint=url,
        **kw,  # type: ignore[arg-type]
    )


def uri(url: str | None, bucket: str, key_file: Path) -> str:
    endpoint = f"&endpoint={quote(url, safe='')}" if url else ""
    return (
        f"storage://gcp?projectID=my-project&bucket={bucket}"
        f"&credentialsPath={quote(str(key_file), safe='')}{endpoint}"
    )


@pytest.fixture
def key_file(google_token_server: FakeGoogleTokenServer, tmp_path: Path) -> Path:
    email = f"sa-{uuid.uuid4().hex[:8]}@my-project.iam.gserviceaccount.com"
    return google_token_server.service_account(tmp_path / "sa.json", email, "my-project")


def email_of(key_file: Path) -> str:
    import json

    return str(json.loads(key_file.read_text())["client_email"])


class TestGCSStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, fake_gcs_url: str) -> AsyncIterator[GCSStorage]:
        s = anonymous(fake_gcs_url, new_bucket())
        yield s
        await s.close()


# -- bucket creation --------------------------------------------------------------------------


async def test_bucket_created_on_first_use(fake_gcs_url: str) -> None:
    bucket = new_bucket()
    s = anonymous(fake_gcs_url, bucket)
    assert admin(fake_gcs_url).lookup_bucket(bucket) is None
    await s.put("k", b"v")
    assert admin(fake_gcs_url).bucket(bucket).blob("k").download_as_bytes() == b"v"
    await s.close()


async def test_open_is_idempotent_and_existing_bucket_is_used(fake_gcs_url: str) -> None:
    bucket = new_bucket()
    admin(fake_gcs_url).create_bucket(bucket).blob("pre").upload_from_string(b"before")
    s = anonymous(fake_gcs_url, bucket)
    await s.open()
    await s.open()
    assert await s.get("pre") == b"before"
    await s.close()


def test_from_uri_creates_nothing(fake_gcs_url: str, key_file: Path) -> None:
    bucket = new_bucket()
    GCSStorage.from_uri(parse_uri(uri(fake_gcs_url, bucket, key_file)))
    assert admin(fake_gcs_url).lookup_bucket(bucket) is None


async def test_oversized_objects_are_refused_unread(fake_gcs_url: str) -> None:
    """Objects past the blob limit planted at DEK ids: the download stops at the limit."""
    bucket = new_bucket()
    s = anonymous(fake_gcs_url, bucket)

    def plant(key: str, data: bytes) -> None:
        admin(fake_gcs_url).bucket(bucket).blob(key).upload_from_string(data)

    await oversized_objects_refused(s, plant)
    await s.close()


# -- create-only writes -----------------------------------------------------------------------


def test_emulator_enforces_generation_precondition(fake_gcs_url: str) -> None:
    """fake-gcs-server really checks ifGenerationMatch=0, which the backend relies on."""
    blob = admin(fake_gcs_url).create_bucket(new_bucket()).blob("k")
    blob.upload_from_string(b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"2", if_generation_match=0)
    assert blob.download_as_bytes() == b"1"


async def test_put_never_overwrites_an_object_written_elsewhere(fake_gcs_url: str) -> None:
    bucket = new_bucket()
    s = anonymous(fake_gcs_url, bucket)
    await s.open()
    admin(fake_gcs_url).bucket(bucket).blob("k").upload_from_string(b"theirs")
    with pytest.raises(DEKExists):
        await s.put("k", b"ours")
    assert await s.get("k") == b"theirs"
    await s.close()


async def test_failed_upload_commit_is_reported(fake_gcs_url: str) -> None:
    """The upload's response is checked: a write that the service did not commit (here: the
    bucket vanished after it was opened) is an error, never a silent success."""
    bucket = new_bucket()
    s = anonymous(fake_gcs_url, bucket)
    await s.open()
    admin(fake_gcs_url).bucket(bucket).delete()
    with pytest.raises(BackendError, match=r"^GCS objects.insert failed: HTTP 404$"):
        await s.put("k", b"v")
    await s.close()


async def test_list_paginates(fake_gcs_url: str) -> None:
    s = anonymous(fake_gcs_url, new_bucket(), page_size=2)
    ids = [f"k{i:02d}" for i in range(7)]
    for i in ids:
        await s.put(i, b"x")
    assert await s.list() == ids
    assert await s.list("k0") == ids
    await s.close()


# -- credentials and URIs ---------------------------------------------------------------------


async def test_from_uri_uses_the_service_account_file(
    fake_gcs_url: str, key_file: Path, google_token_server: FakeGoogleTokenServer
) -> None:
    bucket = new_bucket()
    s = GCSStorage.from_uri(parse_uri(uri(fake_gcs_url, bucket, key_file)))
    assert s.project == "my-project"
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    assert email_of(key_file) in google_token_server.issued
    await s.close()


async def test_env_does_not_override_uri(
    fake_gcs_url: str,
    key_file: Path,
    google_token_server: FakeGoogleTokenServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    other = google_token_server.service_account(
        tmp_path / "other.json", "env-account@bogus.iam.gserviceaccount.com", "bogus-project"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", dead)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "bogus-project")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(other))
    s = GCSStorage.from_uri(parse_uri(uri(fake_gcs_url, new_bucket(), key_file)))
    assert s.project == "my-project"
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    assert email_of(key_file) in google_token_server.issued
    assert "env-account@bogus.iam.gserviceaccount.com" not in google_token_server.issued
    await s.close()


def test_env_endpoint_ignored_without_uri_endpoint(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    s = GCSStorage.from_uri(parse_uri(uri(None, "b", key_file)))
    assert s._client.api_endpoint == "https://storage.googleapis.com"


async def test_application_default_credentials(
    fake_gcs_url: str,
    key_file: Path,
    google_token_server: FakeGoogleTokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Go README's first way: GOOGLE_APPLICATION_CREDENTIALS names the key file."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    s = GCSStorage(new_bucket(), endpoint=fake_gcs_url)
    assert s.project == "my-project"
    await s.put("k", b"v")
    assert email_of(key_file) in google_token_server.issued
    await s.close()


async def test_explicit_key_file(
    fake_gcs_url: str, key_file: Path, google_token_server: FakeGoogleTokenServer
) -> None:
    """The Go README's second way: the key file passed in code."""
    s = GCSStorage(
        new_bucket(), project="my-project", credentials_path=str(key_file), endpoint=fake_gcs_url
    )
    await s.put("k", b"v")
    assert email_of(key_file) in google_token_server.issued
    await s.close()


async def test_untrusted_key_is_a_backend_error(
    fake_gcs_url: str, key_file: Path, google_token_server: FakeGoogleTokenServer, tmp_path: Path
) -> None:
    """A known account's name with another private key: the token endpoint rejects the
    signature, and the storage reports a clean error."""
    rogue = FakeGoogleTokenServer()  # never serves: only mints a key the real one lacks
    rogue.token_uri = google_token_server.token_uri
    forged = rogue.service_account(tmp_path / "rogue.json", email_of(key_file), "p")
    before = google_token_server.rejected
    s = GCSStorage(new_bucket(), project="p", credentials_path=str(forged), endpoint=fake_gcs_url)
    with pytest.raises(BackendError, match=r"^GCS buckets.get failed: RefreshError$"):
        await s.get("k")
    assert google_token_server.rejected == before + 1
    await s.close()


# -- configuration errors ---------------------------------------------------------------------


def test_from_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as err:
        GCSStorage.from_uri(parse_uri("storage://gcp?bucket=b"))
    assert str(err.value) == "storage://gcp: missing parameter(s): projectID, credentialsPath"


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(KMSConfigError) as err:
        GCSStorage.from_uri(parse_uri(uri(None, "b", path)))
    assert str(err.value) == (
        f"GCS storage: cannot read credentials file {path}: No such file or directory"
    )


def test_key_file_that_is_not_a_service_account(tmp_path: Path) -> None:
    path = tmp_path / "user.json"
    path.write_text('{"type": "authorized_user", "refresh_token": "secret-refresh-token"}')
    with pytest.raises(KMSConfigError) as err:
        GCSStorage.from_uri(parse_uri(uri(None, "b", path)))
    assert str(err.value) == f"GCS storage: credentials file {path} is not a service-account key"
    assert "secret-refresh-token" not in str(err.value)


def test_constructor_argument_errors() -> None:
    with pytest.raises(KMSConfigError) as err:
        GCSStorage("", credentials=AnonymousCredentials(), credentials_path="x", page_size=0)  # type: ignore[no-untyped-call]
    assert str(err.value) == (
        "GCS storage: bucket is empty; give credentials or credentials_path, not both; "
        "page_size must be between 1 and 1000"
    )


def test_registry_builds_gcs_storage(key_file: Path) -> None:
    assert isinstance(storage_from_uri(parse_uri(uri(None, "b", key_file))), GCSStorage)


def test_validate_uri_reads_no_file(tmp_path: Path) -> None:
    """Parameter checks alone: a key file that does not exist yet is not an error here."""
    GCSStorage.validate_uri(parse_uri(uri(None, "b", tmp_path / "not-yet.json")))
    with pytest.raises(KMSConfigError, match=r"^storage://gcp: unknown parameter\(s\): location$"):
        GCSStorage.validate_uri(parse_uri(uri(None, "b", tmp_path / "x") + "&location=EU"))


def test_threads_with_own_event_loops_exactly_one_wins(fake_gcs_url: str) -> None:
    threads_race_one_wins(anonymous(fake_gcs_url, new_bucket()))


def test_repr_names_bucket_not_secrets(key_file: Path) -> None:
    s = GCSStorage.from_uri(parse_uri(uri(None, "my-bucket", key_file)))
    assert repr(s) == "GCSStorage(bucket='my-bucket', project='my-project')"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from keybroker.kms.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # its import now fails
    monkeypatch.delitem(sys.modules, "keybroker.kms.storage.gcs")
    with pytest.raises(MissingExtra, match=r"install keybroker\[gcp\]$"):
        importlib.import_module("keybroker.kms.storage.gcs")
