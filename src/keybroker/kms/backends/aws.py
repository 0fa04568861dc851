"""AWS KMS as a key-encryption key: ``kms://aws?region=&accessKeyID=&accessKey=&keyName=``.

The key must be an enabled, symmetric ``ENCRYPT_DECRYPT`` key; it is checked with
``DescribeKey`` on first use.  ``wrap`` is ``Encrypt`` with an encryption context carrying the
associated data, ``unwrap`` is ``Decrypt`` with the same context and the key ARN recorded at
wrap time.  AWS has no user-visible key versions (rotation keeps old material behind the same
ARN, and ``Decrypt`` finds it), so ``kek_version`` is the ARN that ``Encrypt`` reports — plus,
once the key has been rotated, a ``#`` and a marker of the key material current when the wrapper
looked (``#material-<CurrentKeyMaterialId>`` from ``DescribeKey``, or ``#rotation-<n>`` counted
with ``ListKeyRotations`` where ``DescribeKey`` does not report it).  The marker is only a label
for rewrap (:mod:`keybroker.kms.rewrap`) to tell blobs made before the latest rotation; ``Decrypt``
uses the ARN alone.  It is read when the wrapper opens and refreshed by :meth:`current_version`
and :meth:`rotate`, so a long-running wrapper may label new blobs with an older marker: a later
rewrap then redoes them, which is harmless.

Values given to the constructor (or in the URI) are used as they are: environment variables and
shared config files never override them (see :func:`_client_kwargs`).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any, ClassVar, Self

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

__all__ = ["AAD_CONTEXT_KEY", "AWSKMSWrapper"]

#: encryption-context entry that carries ``base64(aad)``
AAD_CONTEXT_KEY = "keybroker:aad"

# Error codes that mean "this ciphertext (or its context) is not ours": one opaque IntegrityError.
_INTEGRITY_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
# botocore session variables: (config-file name, environment variable, default, converter).
_ISOLATED_VARS: dict[str, tuple[Any, ...]] = {
    "profile": (None, None, None, None),
    "config_file": (None, None, os.devnull, None),
    "credentials_file": (None, None, os.devnull, None),
}
_URI_PARAMS = ("region", "accessKeyID", "accessKey", "keyName")


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingExtra("AWS KMS needs boto3: install keybroker[aws]") from exc
    return boto3


class AWSKMSWrapper:
    """A symmetric AWS KMS key.  Construct directly or with :meth:`from_uri`.

    Raises ``KMSConfigError`` for missing arguments, ``MissingExtra`` without boto3.
    """

    name: ClassVar[str] = "aws"
    binds_aad: ClassVar[bool] = True

    def __init__(
        self,
        key_id: str,
        *,
        region: str,
        access_key_id: str | None = None,
        secret_access_key: Secret | None = None,
        endpoint: str | None = None,
    ) -> None:
        problems = [n for n, v in (("keyName", key_id), ("region", region)) if not v]
        if (access_key_id is None) != (secret_access_key is None):
            problems.append("accessKeyID and accessKey must be given together")
        if problems:
            raise KMSConfigError(f"AWS KMS: missing or invalid parameters: {', '.join(problems)}")
        self.kek_id = key_id
        self._client = _make_client(region, access_key_id, secret_access_key, endpoint)
        self._arn: str | None = None
        self._marker = ""
        self._open_lock = asyncio.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` naming every missing or unknown parameter."""
        parsed.check_known(*_URI_PARAMS, "endpoint")
        parsed.require(*_URI_PARAMS)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """Build from a ``kms://aws`` URI (no network I/O; the key is checked by :meth:`open`).

        ``accessKey`` may be an ``env:``/``file:`` reference.  Raises ``KMSConfigError``,
        ``MissingExtra``.
        """
        cls.validate_uri(parsed)
        p = parsed.params
        return cls(
            p["keyName"],
            region=p["region"],
            access_key_id=p["accessKeyID"],
            secret_access_key=resolve_secret(p["accessKey"], what=f"{parsed.label} accessKey"),
            endpoint=parsed.optional("endpoint"),
        )

    async def open(self) -> None:
        """Check the key with ``DescribeKey``.  Called before first use; idempotent.

        Raises ``KMSConfigError`` if the key is missing, disabled or not a symmetric
        encryption key, ``BackendError`` if the service fails.
        """
        async with self._open_lock:
            if self._arn is None:
                await self._describe()

    async def current_version(self) -> str:
        """The label new wraps carry (ARN and material marker), freshly looked up.

        Raises ``KMSConfigError`` (unusable key), ``BackendError``.
        """
        async with self._open_lock:
            await self._describe()
            return f"{self._arn}{self._marker}"

    async def rotate(self) -> str:
        """``RotateKeyOnDemand``: new key material behind the same ARN (old material still
        decrypts).  Returns the new :meth:`current_version`.  Raises ``KMSConfigError``,
        ``BackendError`` (e.g. the rotation quota is exhausted, or the key has imported
        material)."""
        await self.open()
        # Rotation and its listing take a key id or ARN, never an alias: use the ARN.
        await self._call("RotateKeyOnDemand", self._client.rotate_key_on_demand, KeyId=self._arn)
        return await self.current_version()

    async def _describe(self) -> None:
        meta = await self._call("DescribeKey", self._client.describe_key, KeyId=self.kek_id)
        self._arn = _check_key(self.kek_id, meta["KeyMetadata"])
        material = meta["KeyMetadata"].get("CurrentKeyMaterialId")
        self._marker = f"#material-{material}" if material else await self._rotation_marker()

    async def _rotation_marker(self) -> str:
        """``#rotation-<n>`` after n rotations, ``""`` before any (or if we may not list)."""
        count, marker = 0, None
        while True:
            page_args = {"KeyId": self._arn, **({"Marker": marker} if marker else {})}
            try:
                page = await self._call(
                    "ListKeyRotations", self._client.list_key_rotations, **page_args
                )
            except BackendError:
                return ""  # no kms:ListKeyRotations grant: rewrap then cannot skip, only redo
            count += len(page.get("Rotations", ()))
            marker = page.get("NextMarker") if page.get("Truncated") else None
            if not marker:
                return f"#rotation-{count}" if count else ""

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """``Encrypt`` under the key, binding ``aad`` in the encryption context.

        Raises ``KMSConfigError`` (unusable key) or ``BackendError``.
        """
        await self.open()
        out = await self._call(
            "Encrypt",
            self._client.encrypt,
            KeyId=self.kek_id,
            Plaintext=plaintext,
            EncryptionContext=_context(aad),
        )
        label = f"{out['KeyId']}{self._marker}"
        return WrappedKey(self.kek_id, label, bytes(out["CiphertextBlob"]))

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """``Decrypt`` with the configured key and the context made from ``aad``.

        The key ARN recorded in the blob must be this key's: the blob is not to be trusted, and
        a forger who can ``Encrypt`` under any other key this principal may ``Decrypt`` with
        (another key of the account, or a foreign key whose policy grants it) would otherwise
        have a DEK of their choosing opened.

        Raises ``IntegrityError`` for a wrong ciphertext/aad/key, ``BackendError`` otherwise.
        """
        if not wrapped.ciphertext:  # AWS rejects an empty blob client-side, before any request
            raise IntegrityError("the wrapped key cannot be unwrapped")
        await self.open()
        named = wrapped.kek_version.partition("#")[0]
        if named and named != self._arn:
            raise IntegrityError("the wrapped key was made by another KMS key")
        out = await self._call(
            "Decrypt",
            self._client.decrypt,
            KeyId=self._arn or self.kek_id,
            CiphertextBlob=wrapped.ciphertext,
            EncryptionContext=_context(aad),
        )
        return bytes(out["Plaintext"])

    async def close(self) -> None:
        """Close the HTTP connection pool; idempotent."""
        self._client.close()

    async def _call(self, op: str, fn: Any, **kwargs: Any) -> Any:
        import botocore.exceptions

        try:
            return await asyncio.to_thread(fn, **kwargs)
        except botocore.exceptions.ClientError as exc:
            raise _map_client_error(op, self.kek_id, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise BackendError(f"AWS KMS {op} failed: {type(exc).__name__}") from exc


def _make_client(
    region: str, access_key_id: str | None, secret: Secret | None, endpoint: str | None
) -> Any:
    boto3 = _import_boto3()
    import botocore.config
    import botocore.session

    # A private session that reads no profile and no shared config/credentials file, so
    # AWS_PROFILE, AWS_CONFIG_FILE & co. cannot change or break what the URI says.
    core = botocore.session.Session(session_vars=_ISOLATED_VARS)
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret.reveal() if secret else None,
        region_name=region,
        botocore_session=core,
    )
    options: dict[str, Any] = {
        "retries": {"max_attempts": 2, "mode": "standard"},
        # Without this, AWS_ENDPOINT_URL* in the environment would silently redirect calls.
        # (Passed by keyword dict: older botocore stubs do not know the option yet.)
        "ignore_configured_endpoint_urls": True,
    }
    config = botocore.config.Config(**options)
    return session.client("kms", endpoint_url=endpoint, config=config)


def _context(aad: bytes) -> dict[str, str]:
    # KMS contexts are string maps; base64 keeps arbitrary bytes intact and unambiguous.
    # No aad, no context: exactly what Constellation (go-kms-wrapping) sends, so its blobs
    # unwrap here.
    return {AAD_CONTEXT_KEY: base64.b64encode(aad).decode("ascii")} if aad else {}


def _check_key(key_id: str, meta: dict[str, Any]) -> str:
    problems = []
    if meta.get("KeyState") != "Enabled":
        problems.append(f"state is {meta.get('KeyState')}, not Enabled")
    usage = meta.get("KeyUsage") or "ENCRYPT_DECRYPT"  # the AWS default when unset
    if usage != "ENCRYPT_DECRYPT":
        problems.append(f"usage is {usage}, not ENCRYPT_DECRYPT")
    spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec")
    if spec != "SYMMETRIC_DEFAULT":
        problems.append(f"spec is {spec}, not SYMMETRIC_DEFAULT")
    if problems:
        raise KMSConfigError(f"AWS KMS key {key_id!r} is not usable: {'; '.join(problems)}")
    return str(meta["Arn"])


def _map_client_error(op: str, key_id: str, exc: Any) -> Exception:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    if op == "Decrypt" and code in _INTEGRITY_CODES:
        return IntegrityError("the wrapped key cannot be unwrapped")
    if op == "Decrypt" and code == "AccessDeniedException":
        # AWS answers AccessDenied both for a blob naming a key we cannot use (damaged or
        # swapped) and for a missing kms:Decrypt grant; DescribeKey already worked, so the
        # blob is the likelier culprit, but the message keeps both readings open.
        return IntegrityError(
            "the wrapped key cannot be unwrapped (damaged blob, or kms:Decrypt not allowed)"
        )
    if code == "NotFoundException":
        return KMSConfigError(f"AWS KMS key {key_id!r} does not exist")
    if code in {"DisabledException", "KMSInvalidStateException"}:
        return BackendError(f"AWS KMS {op} failed: key {key_id!r} is not enabled ({code})")
    # The code names the failure; AWS messages may echo request values, so they stay out.
    return BackendError(f"AWS KMS {op} failed: {code}")
