"""Reading what go-kms-wrapping's cloud wrappers put in a ``BlobInfo``, as Constellation stores it.

Constellation stores ``wrapping.BlobInfo`` marshalled by Go's ``encoding/json``: names from the
struct's json tags (snake_case), zero values left out (``omitempty``), ``[]byte`` as standard
padded base64, ``uint64`` as a JSON number.  What each wrapper sets (go-kms-wrapping v2,
``Encrypt`` without ``WithoutEnvelope``; ``ciphertext`` and ``iv`` always)::

    wrapper         mechanism                         key_id                  wrapped_key
    awskms          1 AwsKmsEnvelopeAesGcmEncrypt     key ARN (Encrypt KeyId)  CiphertextBlob
    gcpckms         1 GcpCkmsEnvelopeAesGcmEncrypt    .../cryptoKeyVersions/N  Ciphertext
    azurekeyvault   0 AzureKeyVaultEnvelopeAes...     key version             WrapKey result
                    (zero: no "mechanism" at all)

Older Azure wrappers stored ``wrapped_key`` as the *text* of the unpadded base64url encoding
of the wrapped key (so the JSON holds base64 of that text); like the Go wrapper's ``Decrypt``,
a mechanism-0 ``wrapped_key`` that is valid unpadded base64url text is decoded once more.

Also accepted, since a ``BlobInfo`` may have been written with ``protojson`` instead:
lowerCamelCase names (``keyInfo``, ``keyId``, ``wrappedKey``), a ``uint64`` as a decimal
string, and base64 in either alphabet, padded or not (what protojson reads).  A field given in
both spellings is refused.  Mechanisms other than the two envelope ones (0 and 1) are refused;
so is a blob without ``iv`` (the wrappers' direct-encryption mechanisms have none).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from keybroker.kms.errors import IntegrityError

__all__ = ["ENVELOPE_MECHANISMS", "BlobInfo", "parse_blob_info"]

ENVELOPE_MECHANISMS = (0, 1)  # Azure's envelope mechanism is 0; AWS's and GCP's are 1
_AZURE_ENVELOPE = 0
_STD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_RAW_URL = re.compile(r"[A-Za-z0-9_-]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """The fields of a go-kms-wrapping envelope ``BlobInfo`` that matter for a DEK."""

    ciphertext: bytes
    iv: bytes
    mechanism: int
    key_id: str
    wrapped_key: bytes


def parse_blob_info(blob: bytes, key_id: str, *, max_field: int = 1024) -> BlobInfo:
    """Parse ``blob`` (see the module docstring).  Raises ``IntegrityError`` naming the
    structural problem (never a value)."""
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise malformed(key_id, "it is not valid JSON") from None
    info = _obj(doc, key_id, "the blob")
    key_info = _obj(_field(info, "key_info", "keyInfo", key_id), key_id, "key_info")
    mechanism = _mechanism(_field(key_info, "mechanism", "mechanism", key_id), key_id)
    kek = _field(key_info, "key_id", "keyId", key_id)
    kek = "" if kek is None else kek
    if not isinstance(kek, str) or len(kek) > max_field:
        raise malformed(key_id, "key_info.key_id is not a string")
    wrapped = _bytes(key_info, "wrapped_key", "wrappedKey", key_id)
    if mechanism == _AZURE_ENVELOPE:
        wrapped = _azure_legacy_text(wrapped)
    return BlobInfo(
        ciphertext=_bytes(info, "ciphertext", "ciphertext", key_id),
        iv=_bytes(info, "iv", "iv", key_id),
        mechanism=mechanism,
        key_id=kek,
        wrapped_key=wrapped,
    )


def malformed(key_id: str, why: str) -> IntegrityError:
    """The one error for a blob that is not what it should be."""
    return IntegrityError(f"stored blob for id {key_id!r} is malformed: {why}")


def _obj(value: Any, key_id: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(key_id, f"{what} is not a JSON object")
    return value


def _field(doc: dict[str, Any], snake: str, camel: str, key_id: str) -> Any:
    if snake != camel and snake in doc and camel in doc:
        raise malformed(key_id, f"{snake} is given twice (as {snake} and {camel})")
    return doc.get(snake, doc.get(camel))


def _mechanism(value: Any, key_id: str) -> int:
    """A JSON number (encoding/json) or decimal string (protojson); absent means 0."""
    if value is None:
        return 0
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise malformed(key_id, "key_info.mechanism is not a number")
    if value not in ENVELOPE_MECHANISMS:
        raise malformed(
            key_id,
            "key_info.mechanism is not an envelope mechanism (0: Azure Key Vault,"
            " 1: AWS KMS or Google Cloud KMS)",
        )
    return value


def _bytes(doc: dict[str, Any], snake: str, camel: str, key_id: str) -> bytes:
    value = _field(doc, snake, camel, key_id)
    if not isinstance(value, str) or not value:
        raise malformed(key_id, f"{snake} is missing")
    decoded = _b64_any(value)
    if decoded is None:
        raise malformed(key_id, f"{snake} is not base64")
    return decoded


def _b64_any(value: str) -> bytes | None:
    """Standard or URL-safe base64, padded or not (one alphabet per value)."""
    if _STD.fullmatch(value):
        alt = None
    elif _URL.fullmatch(value):
        alt = b"-_"
    else:
        return None
    stripped = value.rstrip("=")
    if len(stripped) % 4 == 1 or (value != stripped and len(value) % 4):
        return None
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        return None


def _azure_legacy_text(wrapped: bytes) -> bytes:
    """The Go Azure wrapper's ``Decrypt``: if the bytes are unpadded base64url text, they are
    the old encoding of the wrapped key; otherwise they are the wrapped key."""
    try:
        text = wrapped.decode("ascii")
    except UnicodeDecodeError:
        return wrapped
    if not _RAW_URL.fullmatch(text) or len(text) % 4 == 1:
        return wrapped
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
