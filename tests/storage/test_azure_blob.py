"""AzureBlobStorage against a real Azurite: the conformance suite plus Azure-specific behaviour."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.kms.errors import BackendError, DEKExists, KMSConfigError
from keybroker.kms.registry import storage_from_uri
from keybroker.kms.storage.azure_blob import AzureBlobStorage
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests.storage.cloud_servers import (
    ENTRA_CLIENT,
    ENTRA_SECRET,
    ENTRA_TENANT,
    Azurite,
    FakeEntraID,
)
from tests.storage.conformance import (
    StorageConformance,
    oversized_objects_refused,
    threads_race_one_wins,
)


def new_container() -> str:
    return f"kb-{uuid.uuid4().hex}"


def admin(server: Azurite) -> BlobServiceClient:
    """A plain SDK client to look at Azurite's state independently of the code under test."""
    return BlobServiceClient.from_connection_string(
        server.connection_string, connection_verify=str(server.ca_path)
    )


def from_conn(server: Azurite, container: str, **kw: object) -> AzureBlobStorage:
    return AzureBlobStorage(
        container,
        connection_string=Secret(server.connection_string),
        ca_file=str(server.ca_path),
        **kw,  # type: ignore[arg-type]
    )


def conn_uri(server: Azurite, container: str, *, account: str | None = None) -> str:
    return (
        f"storage://azure?account={account or server.account}&container={container}"
        f"&connectionString={quote(server.connection_string, safe='')}"
        f"&caFile={quote(str(server.ca_path), safe='')}"
    )


class TestAzureBlobStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, azurite: Azurite) -> AsyncIterator[AzureBlobStorage]:
        s = from_conn(azurite, new_container())
        yield s
        await s.close()


# -- container creation -----------------------------------------------------------------------


async def test_container_created_on_first_use(azurite: Azurite) -> None:
    container = new_container()
    s = from_conn(azurite, container)
    names = {c.name for c in admin(azurite).list_containers()}
    assert container not in names
    await s.put("k", b"v")
    blob = admin(azurite).get_blob_client(container, "k")
    assert blob.download_blob().readall() == b"v"
    await s.close()


async def test_open_is_idempotent_and_existing_container_is_used(azurite: Azurite) -> None:
    container = new_container()
    admin(azurite).create_container(container).upload_blob("pre", b"before")
    s = from_conn(azurite, container)
    await s.open()
    await s.open()
    assert await s.get("pre") == b"before"
    await s.close()


def test_from_uri_creates_nothing(azurite: Azurite) -> None:
    container = new_container()
    AzureBlobStorage.from_uri(parse_uri(conn_uri(azurite, container)))
    assert container not in {c.name for c in admin(azurite).list_containers()}


async def test_oversized_objects_are_refused_unread(azurite: Azurite) -> None:
    """Blobs past the blob limit planted at DEK ids: one ranged read of the limit plus one
    byte, so the 24 MiB blob is never fetched."""
    container = new_container()
    s = from_conn(azurite, container)

    def plant(key: str, data: bytes) -> None:
        admin(azurite).get_blob_client(container, key).upload_blob(data)

    await oversized_objects_refused(s, plant)
    await s.close()


# -- create-only writes -----------------------------------------------------------------------


async def test_put_never_overwrites_a_blob_written_elsewhere(azurite: Azurite) -> None:
    """The service enforces If-None-Match: * (no read-before-write in our code)."""
    container = new_container()
    s = from_conn(azurite, container)
    await s.open()
    admin(azurite).get_blob_client(container, "k").upload_blob(b"theirs")
    with pytest.raises(DEKExists):
        await s.put("k", b"ours")
    assert await s.get("k") == b"theirs"
    await s.close()


def test_azurite_enforces_if_none_match(azurite: Azurite) -> None:
    """The emulator really checks the precondition the backend relies on."""
    container = admin(azurite).create_container(new_container())
    container.upload_blob("k", b"1")
    with pytest.raises(ResourceExistsError):
        container.upload_blob("k", b"2", overwrite=False)


async def test_list_paginates(azurite: Azurite) -> None:
    s = from_conn(azurite, new_container(), page_size=2)
    ids = [f"k{i:02d}" for i in range(7)]
    for i in ids:
        await s.put(i, b"x")
    assert await s.list() == ids
    assert await s.list("k0") == ids
    await s.close()


# -- credentials and URIs ---------------------------------------------------------------------


async def test_from_uri_with_connection_string(azurite: Azurite) -> None:
    container = new_container()
    s = AzureBlobStorage.from_uri(parse_uri(conn_uri(azurite, container)))
    await s.put("k", b"v")
    assert admin(azurite).get_blob_client(container, "k").download_blob().readall() == b"v"
    await s.close()


async def test_connection_string_from_file_reference(azurite: Azurite, tmp_path: object) -> None:

    path = Path(str(tmp_path)) / "conn"
    path.write_text(azurite.connection_string + "\n")
    s = AzureBlobStorage.from_uri(
        parse_uri(
            f"storage://azure?account={azurite.account}&container={new_container()}"
            f"&connectionString=file:{path}&caFile={azurite.ca_path}"
        )
    )
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    await s.close()


async def test_endpoint_overrides_connection_string(azurite: Azurite) -> None:
    """``endpoint=`` wins over the connection string's BlobEndpoint."""
    dead = "DefaultEndpointsProtocol=http;AccountName={a};AccountKey={k};BlobEndpoint={e};".format(
        a=azurite.account, k=azurite.key, e="https://127.0.0.1:9/devstoreaccount1"
    )
    container = new_container()
    s = AzureBlobStorage.from_uri(
        parse_uri(
            f"storage://azure?account={azurite.account}&container={container}"
            f"&connectionString={quote(dead, safe='')}"
            f"&endpoint={quote(azurite.blob_endpoint, safe='')}&caFile={azurite.ca_path}"
        )
    )
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    await s.close()


async def test_account_key_credential_with_endpoint(azurite: Azurite) -> None:
    s = AzureBlobStorage(
        new_container(),
        account=azurite.account,
        credential={"account_name": azurite.account, "account_key": azurite.key},
        endpoint=azurite.blob_endpoint,
        ca_file=str(azurite.ca_path),
    )
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    await s.close()


async def test_wrong_key_is_a_backend_error_without_secrets(azurite: Azurite) -> None:
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    conn = azurite.connection_string.replace(azurite.key, wrong_key)
    s = AzureBlobStorage(
        new_container(), connection_string=Secret(conn), ca_file=str(azurite.ca_path)
    )
    with pytest.raises(BackendError) as err:
        await s.put("k", b"v")
    text = str(err.value)
    # Azurite answers 400 InvalidAuthenticationInfo when OAuth is on; Azure answers 403
    assert re.fullmatch(
        r"Azure Create Container failed: (InvalidAuthenticationInfo \(HTTP 400\)"
        r"|Authori[sz]ationFailure \(HTTP 403\)|AuthenticationFailed \(HTTP 403\))",
        text,
    )
    assert wrong_key not in text
    await s.close()


def sp_uri(azurite: Azurite, entra: FakeEntraID, container: str, secret: str) -> str:
    return (
        f"storage://azure?account={azurite.account}&container={container}"
        f"&tenantID={ENTRA_TENANT}&clientID={ENTRA_CLIENT}&clientSecret={quote(secret, safe='')}"
        f"&endpoint={quote(azurite.blob_endpoint, safe='')}"
        f"&authorityHost={quote(entra.url, safe='')}&caFile={quote(str(azurite.ca_path), safe='')}"
    )


async def test_service_principal_end_to_end(
    azurite: Azurite, entra: FakeEntraID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constellation's way: tenant/client id/secret.  The credential gets a token from the
    (fake) Entra ID and Azurite accepts it as a bearer token."""
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.setenv(name, "bogus")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9")
    container = new_container()
    text = sp_uri(azurite, entra, container, ENTRA_SECRET)
    before = entra.issued
    s = AzureBlobStorage.from_uri(parse_uri(text))
    await s.put("k", b"v")
    assert await s.get("k") == b"v"
    assert await s.list() == ["k"]
    assert entra.issued == before + 1  # one token, cached for every later call
    assert admin(azurite).get_blob_client(container, "k").download_blob().readall() == b"v"
    await s.close()


async def test_service_principal_wrong_secret(azurite: Azurite, entra: FakeEntraID) -> None:
    """Built directly (no retries, to keep the test fast): the token request is refused and
    the storage reports a clean error without the secret."""
    credential = AzureBlobStorage.service_principal(
        ENTRA_TENANT,
        ENTRA_CLIENT,
        Secret("wrong-secret"),
        authority_host=entra.url,
        ca_file=str(azurite.ca_path),
    )
    s = AzureBlobStorage(
        new_container(),
        account=azurite.account,
        credential=credential,
        endpoint=azurite.blob_endpoint,
        ca_file=str(azurite.ca_path),
        retries=0,
    )
    before = entra.rejected
    with pytest.raises(BackendError) as err:
        await s.get("k")
    assert str(err.value) == "Azure Create Container failed: ClientAuthenticationError"
    assert "wrong-secret" not in str(err.value)
    assert entra.rejected == before + 1
    await s.close()


@pytest.mark.parametrize(
    ("authority_param", "authority"),
    [
        ("&authorityHost=login.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
        ("", "https://login.microsoftonline.com"),
    ],
)
def test_from_uri_service_principal_ignores_azure_env(
    monkeypatch: pytest.MonkeyPatch, authority_param: str, authority: str
) -> None:
    """No Entra ID emulator exists here: check that the credential is built from the URI's
    values and an explicit authority, never from AZURE_* environment variables."""
    from azure.identity import ClientSecretCredential

    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.setenv(name, "bogus")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.bogus.example")
    s = AzureBlobStorage.from_uri(
        parse_uri(
            "storage://azure?account=acct&container=c&tenantID=tenant-1&clientID=client-1"
            f"&clientSecret=s3cr%2Bt{authority_param}"
            "&endpoint=https%3A%2F%2Facct.blob.core.chinacloudapi.cn"
        )
    )
    cred = s._credential
    assert isinstance(cred, ClientSecretCredential)
    assert (cred._tenant_id, cred._client_id, cred._client_credential) == (
        "tenant-1",
        "client-1",
        "s3cr+t",
    )
    assert cred._authority == authority
    assert s._service.url.startswith("https://acct.blob.core.chinacloudapi.cn")
    assert s.account == "acct"


def test_default_endpoint_is_the_public_cloud() -> None:
    s = AzureBlobStorage.from_uri(
        parse_uri("storage://azure?account=acct&container=c&tenantID=t&clientID=c&clientSecret=s")
    )
    assert s._service.url == "https://acct.blob.core.windows.net/"


# -- configuration errors ---------------------------------------------------------------------


def test_from_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as err:
        AzureBlobStorage.from_uri(parse_uri("storage://azure?account=a"))
    assert str(err.value) == (
        "storage://azure: missing parameter(s): container, tenantID, clientID, clientSecret"
    )


def test_from_uri_connection_string_excludes_service_principal(azurite: Azurite) -> None:
    with pytest.raises(KMSConfigError) as err:
        AzureBlobStorage.from_uri(parse_uri(conn_uri(azurite, "c") + "&tenantID=t&clientID=x"))
    assert str(err.value) == (
        "storage://azure: connectionString excludes parameter(s): tenantID, clientID"
    )


def test_from_uri_account_must_match_connection_string(azurite: Azurite) -> None:
    with pytest.raises(KMSConfigError) as err:
        AzureBlobStorage.from_uri(parse_uri(conn_uri(azurite, "c", account="other")))
    assert str(err.value) == (
        "storage://azure: account does not match the connectionString's AccountName"
    )
    assert azurite.key not in str(err.value)


def test_malformed_connection_string_does_not_echo_it() -> None:
    with pytest.raises(KMSConfigError) as err:
        AzureBlobStorage("c", connection_string=Secret("AccountName=x;garbage-secret"))
    assert "garbage-secret" not in str(err.value)


def test_constructor_argument_errors() -> None:
    with pytest.raises(KMSConfigError) as err:
        AzureBlobStorage("", page_size=0)
    assert str(err.value) == (
        "Azure Blob storage: container is empty; account (or endpoint) is required without a "
        "connection string; page_size must be between 1 and 5000"
    )


def test_registry_builds_azure_storage(azurite: Azurite) -> None:
    built = storage_from_uri(parse_uri(conn_uri(azurite, "c")))
    assert isinstance(built, AzureBlobStorage)


def test_validate_uri_checks_parameters_only() -> None:
    """Parameter checks alone: an env: reference to an unset variable is not resolved here."""
    AzureBlobStorage.validate_uri(
        parse_uri("storage://azure?account=a&container=c&connectionString=env:KB_UNSET_VAR")
    )
    with pytest.raises(KMSConfigError, match=r"^storage://azure: missing parameter\(s\): account$"):
        AzureBlobStorage.validate_uri(parse_uri("storage://azure?container=c&connectionString=x"))


def test_retries_bounded() -> None:
    with pytest.raises(
        KMSConfigError, match=r"^Azure Blob storage: retries must be between 0 and 10$"
    ):
        AzureBlobStorage("c", account="a", retries=-1)


CONNECTION_STRING_ERRORS = {
    "storage://azure: connectionString has no AccountName",
    "storage://azure: account does not match the connectionString's AccountName",
    "Azure Blob storage: invalid connection string or endpoint",
}


@settings(max_examples=200, deadline=None)
@given(conn=st.text(min_size=1, max_size=200).filter(lambda t: not t.startswith(("env:", "file:"))))
def test_fuzz_connection_string_errors_are_clean(conn: str) -> None:
    """Any connection string either builds a storage or fails with KMSConfigError, and the
    message never quotes it."""
    text = f"storage://azure?account=acct&container=c&connectionString={quote(conn, safe='')}"
    try:
        AzureBlobStorage.from_uri(parse_uri(text))
    except KMSConfigError as exc:
        assert str(exc) in CONNECTION_STRING_ERRORS  # fixed texts: nothing of the input


def test_threads_with_own_event_loops_exactly_one_wins(azurite: Azurite) -> None:
    threads_race_one_wins(from_conn(azurite, new_container()))


def test_repr_names_container_not_secrets(azurite: Azurite) -> None:
    s = AzureBlobStorage.from_uri(parse_uri(conn_uri(azurite, "my-container")))
    assert repr(s) == "AzureBlobStorage(account='devstoreaccount1', container='my-container')"
    assert azurite.key not in repr(s)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from keybroker.kms.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)  # its import now fails
    monkeypatch.delitem(sys.modules, "keybroker.kms.storage.azure_blob")
    with pytest.raises(MissingExtra, match=r"install keybroker\[azure\]$"):
        importlib.import_module("keybroker.kms.storage.azure_blob")
