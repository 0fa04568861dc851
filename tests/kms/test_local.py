"""LocalKeyWrapper: a real AES-GCM wrapper under a local key file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.registry import wrapper_from_uri
from keybroker.kms.uri import parse_uri
from tests.kms.wrapper_conformance import KeyWrapperConformance


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


class TestLocalKeyWrapper(KeyWrapperConformance):
    @pytest.fixture
    async def wrapper(self, key_file: Path) -> AsyncIterator[LocalKeyWrapper]:
        w = LocalKeyWrapper.from_key_file(key_file)
        yield w
        await w.close()


def test_from_uri(key_file: Path) -> None:
    w = wrapper_from_uri(parse_uri(f"kms://local?keyFile={key_file}"))
    assert isinstance(w, LocalKeyWrapper)
    assert "kek_id" in repr(w) and key_file.read_bytes().hex() not in repr(w)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", r"^kms://local: missing parameter\(s\): keyFile$"),
        ("?keyFile=", r"^kms://local: missing parameter\(s\): keyFile$"),
        ("?keyfile=/x", r"^kms://local: unknown parameter\(s\): keyfile$"),
    ],
)
def test_from_uri_errors(query: str, message: str) -> None:
    with pytest.raises(KMSConfigError, match=message):
        wrapper_from_uri(parse_uri(f"kms://local{query}"))


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(
        KMSConfigError,
        match=rf"^kms://local: cannot read keyFile {path}: No such file or directory$",
    ):
        wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}"))


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_wrong_key_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"k" * size)
    with pytest.raises(KMSConfigError, match=rf"must hold exactly 32 bytes, not {size}$"):
        LocalKeyWrapper.from_key_file(path)


async def test_other_key_cannot_unwrap() -> None:
    a, b = LocalKeyWrapper(os.urandom(32)), LocalKeyWrapper(os.urandom(32))
    wrapped = await a.wrap(b"k" * 32, b"")
    with pytest.raises(IntegrityError, match="cannot be unwrapped with this KEK"):
        await b.unwrap(wrapped, b"")


async def test_known_answer() -> None:
    """Wrapped form is nonce || AES-GCM(key, nonce, pt, aad): decrypt it independently."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = bytes(range(32))
    wrapped = await LocalKeyWrapper(key).wrap(b"secret-dek", b"ctx")
    assert wrapped.kek_id == "local:630dcd2966c43366"
    assert wrapped.kek_version == "1"
    nonce, sealed = wrapped.ciphertext[:12], wrapped.ciphertext[12:]
    assert AESGCM(key).decrypt(nonce, sealed, b"ctx") == b"secret-dek"
