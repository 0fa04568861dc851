"""Azure Blob Storage as DEK storage.

URI: ``storage://azure?account=&container=&tenantID=&clientID=&clientSecret=`` (a service
principal, as in Constellation), or ours: ``storage://azure?account=&container=&connectionString=``
(the storage account's connection string instead of the three service-principal values).
Optional: ``endpoint=`` (the blob service URL: an emulator or a sovereign cloud such as
``https://<account>.blob.core.chinacloudapi.cn``), ``authorityHost=`` (the Entra ID host of a
sovereign cloud, e.g. ``login.chinacloudapi.cn``; a host given here is trusted as is, without
Microsoft's instance discovery) and ``caFile=`` (a PEM bundle to verify both against, for
private endpoints and emulators).  ``clientSecret`` and ``connectionString``
may be secret references (``env:NAME``, ``file:PATH``).

- The container is created on first use (or by :meth:`AzureBlobStorage.open`) when missing.
- ``put`` is Put Blob with ``If-None-Match: *``: the service refuses to overwrite, so two racing
  first writers cannot both win; the loser gets ``DEKExists``.
- Reads are one ranged Get Blob of the blob limit (64 KiB) plus one byte: a larger blob (say,
  one planted at a DEK id) is refused with ``IntegrityError`` and never read whole.
- ``replace`` (compare-and-swap, used by rewrap; not part of the Storage protocol) downloads the
  blob with its ETag, compares the bytes and overwrites with ``If-Match:`` that ETag: a
  concurrent writer (or delete) makes the write fail with 412 ``ConditionNotMet``, reported as
  ``False``, and a missing blob is ``DEKNotFound``: replace never creates one.  A retried write
  that had in fact been stored also sees 412; rewrap then re-reads its own blob.
- Values come from the URI or the constructor only; the SDK reads no environment variable for
  them (the authority host is passed explicitly so ``AZURE_AUTHORITY_HOST`` cannot redirect it).

The SDK's synchronous client runs in worker threads, so one storage serves any event loop.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Self

from keybroker.kms.errors import BackendError, KMSConfigError, MissingExtra
from keybroker.kms.storage import MAX_BLOB_BYTES, validate_blob, validate_key_id
from keybroker.kms.storage._common import (
    ErrorTypes,
    ThreadedStorage,
    sorted_names,
    too_large,
    translate,
)
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

try:
    from azure.core import MatchConditions
    from azure.core import exceptions as azexc
    from azure.storage.blob import BlobServiceClient, ExponentialRetry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra(
        "Azure Blob storage needs azure-storage-blob: install keybroker[azure]"
    ) from exc

__all__ = ["AzureBlobStorage"]

_SP_PARAMS = ("tenantID", "clientID", "clientSecret")
_KNOWN = (
    "account",
    "container",
    *_SP_PARAMS,
    "connectionString",
    "endpoint",
    "authorityHost",
    "caFile",
)
_PUBLIC_AUTHORITY = "login.microsoftonline.com"
# Bounded retries: the SDK defaults (back-off from 15 s, also on authentication failures)
# turn a dead endpoint or a wrong secret into minutes.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "connection_timeout": 20}
_RETRIES = 3
_SDK_ERRORS: ErrorTypes = (azexc.AzureError, OSError)


class AzureBlobStorage(ThreadedStorage):
    """Wrapped DEKs as block blobs in one container; the blob name is the key id.

    Authentication, in order: an explicit ``client``; a ``connection_string`` (account name,
    key and endpoints); or ``account`` with a ``credential`` (a token credential such as
    :meth:`service_principal`, an account key, or a SAS), against ``endpoint`` or
    ``https://<account>.blob.core.windows.net``.

    Raises ``KMSConfigError`` for invalid arguments, ``MissingExtra`` without the Azure SDK.
    """

    name: ClassVar[str] = "azure"
    _service_name: ClassVar[str] = "Azure Blob"

    def __init__(
        self,
        container: str,
        *,
        account: str | None = None,
        connection_string: Secret | None = None,
        credential: Any = None,
        endpoint: str | None = None,
        ca_file: str | None = None,
        client: BlobServiceClient | None = None,
        page_size: int = 1000,
        retries: int = _RETRIES,
    ) -> None:
        _check_args(container, account, connection_string, credential, endpoint, page_size)
        if not 0 <= retries <= 10:
            raise KMSConfigError("Azure Blob storage: retries must be between 0 and 10")
        self.container = container
        self._page_size = page_size
        self._credential = credential
        options = {
            **_CLIENT_OPTIONS,
            "connection_verify": ca_file or True,
            "retry_policy": ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=retries, random_jitter_range=1
            ),
        }
        self._service = client or _make_service(
            account, connection_string, credential, endpoint, options
        )
        self._container = self._service.get_container_client(container)
        self._init_threaded()

    @staticmethod
    def service_principal(
        tenant_id: str,
        client_id: str,
        client_secret: Secret,
        *,
        authority_host: str | None = None,
        ca_file: str | None = None,
    ) -> Any:
        """An Entra ID client-secret credential (``azure.identity.ClientSecretCredential``).
        A custom ``authority_host`` is trusted as given (no instance discovery, which would
        ask login.microsoftonline.com about it).

        Raises ``MissingExtra`` without azure-identity.
        """
        try:
            from azure.identity import ClientSecretCredential
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise MissingExtra(
                "Azure service principals need azure-identity: install keybroker[azure]"
            ) from exc
        return ClientSecretCredential(
            tenant_id,
            client_id,
            client_secret.reveal(),
            authority=authority_host or _PUBLIC_AUTHORITY,
            disable_instance_discovery=authority_host is not None,
            connection_verify=ca_file or True,
            **_CLIENT_OPTIONS,
        )

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Check the parameters of ``storage://azure?...`` alone (no I/O, nothing built).

        Raises ``KMSConfigError`` naming every unknown, missing, empty or conflicting parameter.
        """
        parsed.check_known(*_KNOWN)
        parsed.optional("endpoint")
        if parsed.optional("connectionString") is None:
            parsed.require("account", "container", *_SP_PARAMS)
            parsed.optional("authorityHost")
            parsed.optional("caFile")
            return
        clash = [n for n in (*_SP_PARAMS, "authorityHost") if n in parsed.params]
        if clash:
            raise KMSConfigError(
                f"{parsed.label}: connectionString excludes parameter(s): {', '.join(clash)}"
            )
        parsed.require("account", "container")

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from ``storage://azure?...`` without touching the network.

        Raises ``KMSConfigError`` naming every missing, unknown or conflicting parameter, an
        unresolvable secret reference, or a connection string for another account.
        """
        cls.validate_uri(parsed)
        p = parsed.require("account", "container")
        endpoint = parsed.optional("endpoint")
        ca_file = parsed.optional("caFile")
        conn = parsed.optional("connectionString")
        if conn is not None:
            secret = resolve_secret(conn, what=f"{parsed.label} connectionString")
            _check_account(parsed.label, p["account"], secret)
            return cls(p["container"], connection_string=secret, endpoint=endpoint, ca_file=ca_file)
        sp = parsed.require(*_SP_PARAMS)
        credential = cls.service_principal(
            sp["tenantID"],
            sp["clientID"],
            resolve_secret(sp["clientSecret"], what=f"{parsed.label} clientSecret"),
            authority_host=parsed.optional("authorityHost"),
            ca_file=ca_file,
        )
        return cls(
            p["container"],
            account=p["account"],
            credential=credential,
            endpoint=endpoint,
            ca_file=ca_file,
        )

    def __repr__(self) -> str:
        return f"AzureBlobStorage(account={self.account!r}, container={self.container!r})"

    @property
    def account(self) -> str:
        """The storage account name."""
        return str(self._service.account_name)

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-swap: write ``new`` only if the blob still holds ``old``; ``False``
        (no change) if it does not.  Raises ``DEKNotFound``, ``BackendError``."""
        validate_key_id(key_id)
        return await self._run(self._replace, key_id, validate_blob(old), validate_blob(new))

    # -- sync halves, run in a worker thread --------------------------------------------------

    def _close_sync(self) -> None:
        self._service.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    def _make_ready(self) -> None:
        try:
            if not self._container.exists():
                self._container.create_container()
        except azexc.ResourceExistsError:
            pass  # created by a concurrent process since we looked: just as good
        except _SDK_ERRORS as exc:
            raise _backend("Create Container", exc) from exc

    def _get(self, key_id: str) -> bytes:
        return self._read(key_id)[0]

    def _put(self, key_id: str, data: bytes) -> None:
        exists = (azexc.ResourceExistsError, azexc.ResourceModifiedError)
        with _translate("Put Blob", key_id, exists=exists):
            self._container.upload_blob(key_id, data, overwrite=False, validate_content=True)

    def _replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        current, etag = self._read(key_id)
        if current != old:
            return False
        with _translate("Put Blob", key_id, not_found=(azexc.ResourceNotFoundError,)):
            try:
                self._container.upload_blob(
                    key_id,
                    new,
                    overwrite=True,
                    validate_content=True,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except azexc.ResourceModifiedError:  # 412 ConditionNotMet
                return False  # rewritten or deleted since we read it
        return True

    def _read(self, key_id: str) -> tuple[bytes, str]:
        """The blob's bytes and ETag: one ranged Get Blob of the blob limit plus one byte
        (the SDK would otherwise fetch up to 32 MiB at once), refused when the blob is larger.
        Raises ``DEKNotFound``, ``IntegrityError``, ``BackendError``."""
        with _translate("Get Blob", key_id, not_found=(azexc.ResourceNotFoundError,)):
            download = self._container.download_blob(
                key_id, offset=0, length=MAX_BLOB_BYTES + 1, max_concurrency=1
            )
            data, etag = bytes(download.readall()), download.properties.etag
        if len(data) > MAX_BLOB_BYTES:
            raise too_large(key_id)
        if not etag:  # without it the write would be unconditional
            raise BackendError("Azure Get Blob failed: no ETag in the response")
        return data, str(etag)

    def _delete(self, key_id: str) -> None:
        with _translate("Delete Blob", key_id, not_found=(azexc.ResourceNotFoundError,)):
            self._container.delete_blob(key_id)

    def _list(self, prefix: str) -> builtins.list[str]:
        with _translate("List Blobs"):
            blobs = self._container.list_blobs(
                name_starts_with=prefix or None, results_per_page=self._page_size
            )
            return sorted_names(blob.name for blob in blobs)


def _check_args(
    container: str,
    account: str | None,
    connection_string: Secret | None,
    credential: Any,
    endpoint: str | None,
    page_size: int,
) -> None:
    problems = []
    if not container:
        problems.append("container is empty")
    if connection_string is not None:
        if not isinstance(connection_string, Secret):
            problems.append("connection_string must be a Secret")
        if credential is not None:
            problems.append("give connection_string or credential, not both")
    elif not account and not endpoint:
        problems.append("account (or endpoint) is required without a connection string")
    if not 1 <= page_size <= 5000:
        problems.append("page_size must be between 1 and 5000")
    if problems:
        raise KMSConfigError(f"Azure Blob storage: {'; '.join(problems)}")


def _connection_fields(conn: Secret) -> dict[str, str]:
    """``Key=Value;...`` pairs; keys compared case-insensitively, as the SDK does."""
    fields = {}
    for part in conn.reveal().split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def _check_account(label: str, account: str, conn: Secret) -> None:
    """The URI's ``account`` must be the connection string's ``AccountName``, so a pasted
    connection string for another account is caught before any request."""
    fields = _connection_fields(conn)
    if "accountname" not in fields:
        raise KMSConfigError(f"{label}: connectionString has no AccountName")
    if fields["accountname"] != account:
        raise KMSConfigError(f"{label}: account does not match the connectionString's AccountName")


def _make_service(
    account: str | None,
    conn: Secret | None,
    credential: Any,
    endpoint: str | None,
    options: dict[str, Any],
) -> BlobServiceClient:
    try:
        if conn is not None:
            return _from_connection_string(conn, endpoint, options)
        url = endpoint or f"https://{account}.blob.core.windows.net"
        return BlobServiceClient(url, credential=credential, **options)
    except (ValueError, TypeError, azexc.AzureError):
        # the SDK's message may quote the connection string: name only the argument
        raise KMSConfigError("Azure Blob storage: invalid connection string or endpoint") from None


def _from_connection_string(
    conn: Secret, endpoint: str | None, options: dict[str, Any]
) -> BlobServiceClient:
    if endpoint is None:
        return BlobServiceClient.from_connection_string(conn.reveal(), **options)
    # An explicit endpoint wins over the connection string's BlobEndpoint/EndpointSuffix.
    fields = _connection_fields(conn)
    if "accountname" not in fields or "accountkey" not in fields:
        raise ValueError("an endpoint override needs AccountName and AccountKey")
    key = {"account_name": fields["accountname"], "account_key": fields["accountkey"]}
    return BlobServiceClient(endpoint, credential=key, **options)


def _backend(operation: str, exc: Exception) -> BackendError:
    """A BackendError naming the operation, status and error code, never the service's message
    (Azure's authentication errors echo the string-to-sign and the signature)."""
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # the SDK gives a StorageErrorCode enum or a str
    if status is None:
        return BackendError(f"Azure {operation} failed: {type(exc).__name__}")
    return BackendError(f"Azure {operation} failed: {code or 'error'} (HTTP {status})")


def _translate(
    operation: str, key_id: str = "", *, not_found: ErrorTypes = (), exists: ErrorTypes = ()
) -> translate:
    return translate(
        operation, _SDK_ERRORS, _backend, key_id=key_id, not_found=not_found, exists=exists
    )
