"""The public names of keybroker.kms and keybroker.kms.storage are pinned; secrets stay out of
messages and reprs."""

from __future__ import annotations

import base64
import os

import pytest

import keybroker.kms
import keybroker.kms.storage
from keybroker.kms import from_uris
from keybroker.kms.errors import KMSConfigError


def test_kms_exports() -> None:
    assert sorted(keybroker.kms.__all__) == sorted(
        [
            "KMS", "BackendError", "CachedKMS", "ClusterKMS", "DEKExists", "DEKNotFound",
            "ExternalKMS", "IntegrityError", "KMSConfigError", "KMSError", "KMSObserver",
            "KeyWrapper", "LegacyBlobs", "LocalKeyWrapper", "MissingExtra", "ParsedURI",
            "RewrapReport", "WrappedKey", "WriteFormat", "from_uris", "hkdf_sha256", "open_dek",
            "parse_uri", "register_storage", "register_wrapper", "resolve_secret", "rewrap_all",
            "seal_dek", "split_store_options", "storage_from_uri", "wrapper_from_uri",
        ]
    )  # fmt: skip
    for name in keybroker.kms.__all__:
        assert hasattr(keybroker.kms, name), name


def test_storage_exports() -> None:
    assert sorted(keybroker.kms.storage.__all__) == sorted(
        [
            "MAX_BLOB_BYTES", "MAX_KEY_ID_BYTES", "Storage", "validate_blob", "validate_key_id",
            "validate_prefix",
        ]
    )  # fmt: skip
    for name in keybroker.kms.storage.__all__:
        assert hasattr(keybroker.kms.storage, name), name


SHORT = base64.urlsafe_b64encode(b"TOPSECRETVALUE").decode()  # 14 bytes: too short


@pytest.mark.parametrize(
    "kms_uri",
    [
        f"kms://cluster-kms?key={SHORT}&salt={SHORT}",
        f"kms://cluster-kms?key={SHORT}!&salt={SHORT}",
        f"kms://cluster-kms?key={SHORT}&salt={SHORT}&{SHORT}",
        f"kms://cluster-kms?key={SHORT}%zz&salt=x",
    ],
)
def test_config_errors_never_contain_secrets(kms_uri: str) -> None:
    with pytest.raises(KMSConfigError) as info:
        from_uris(kms_uri=kms_uri)
    text = str(info.value) + repr(info.value)
    assert SHORT not in text and "TOPSECRET" not in text
    assert info.value.__cause__ is None or SHORT not in str(info.value.__cause__)


async def test_kms_repr_has_no_key_material() -> None:
    raw = os.urandom(32)
    key = base64.urlsafe_b64encode(raw).decode()
    kms = from_uris(kms_uri=f"kms://cluster-kms?key={key}&salt={key}")
    assert key not in repr(kms) and key[:8] not in repr(kms)
