"""FileStorage passes the conformance suite; names cannot escape; writes are atomic."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.kms.errors import BackendError, KMSConfigError
from keybroker.kms.registry import storage_from_uri
from keybroker.kms.storage import MAX_KEY_ID_BYTES, validate_key_id
from keybroker.kms.storage.file import FileStorage, decode_name, encode_name
from keybroker.kms.uri import parse_uri
from tests.storage.conformance import StorageConformance


class TestFileStorage(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[FileStorage]:
        s = FileStorage(tmp_path / "store")
        yield s
        await s.close()


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_traversal_ids_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    with pytest.raises(ValueError, match=r"must not end with '\.'"):
        await s.put("x/../../escape", b"v")
    for key_id in ("..x", "a/b", "%2E%2E", "a/.b"):
        await s.put(key_id, b"v")
    files = _all_files(tmp_path)
    assert files and all(f.parent == root for f in files)  # ids map to flat names
    assert sorted(f.name for f in files) == sorted(["%2E%2Ex", "a%2Fb", "%252E%252E", "a%2F%2Eb"])
    # Even an id the validator would refuse encodes to one harmless component.
    assert encode_name("../../escape") == ["%2E%2E%2F%2E%2E%2Fescape"]


async def test_long_ids_are_split_into_short_components(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    key_id = "ü" * (MAX_KEY_ID_BYTES // 2)  # 128 chars -> 768 encoded characters
    await s.put(key_id, b"long")
    (path,) = _all_files(tmp_path)
    parts = path.relative_to(tmp_path).parts
    assert len(parts) == 4 and all(len(p) <= 201 for p in parts)
    assert await s.list() == [key_id]
    assert await s.get(key_id) == b"long"


async def test_foreign_and_temp_files_are_ignored(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    await s.put("real", b"v")
    (tmp_path / ".tmp-leftover").write_bytes(b"partial")
    (tmp_path / "not%ZZvalid").write_bytes(b"x")
    (tmp_path / "lower%2fcase").write_bytes(b"x")  # not our canonical encoding
    (tmp_path / "subdir").mkdir()
    (tmp_path / "subdir" / "x").write_bytes(b"x")
    assert await s.list() == ["real"]


async def test_no_temp_files_left_after_lost_race(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    await s.put("k", b"first")
    with pytest.raises(Exception, match="already stored"):
        await s.put("k", b"second")
    assert [f.name for f in _all_files(tmp_path)] == ["k"]


async def test_file_permissions(tmp_path: Path) -> None:
    s = FileStorage(tmp_path / "new")
    await s.put("k", b"v")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "k").stat().st_mode & 0o777 == 0o600


async def test_get_from_missing_directory_is_not_found(tmp_path: Path) -> None:
    from keybroker.kms.errors import DEKNotFound

    s = FileStorage(tmp_path / "absent")
    with pytest.raises(DEKNotFound):
        await s.get("k")
    assert await s.list() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_unwritable_directory_is_backend_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(BackendError, match=r"^file storage: Permission denied$"):
        await FileStorage(ro).put("k", b"v")


async def test_path_is_a_file_is_backend_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(BackendError, match=r"^file storage: "):
        await FileStorage(blocker).put("k", b"v")


async def test_open_creates_directory(tmp_path: Path) -> None:
    s = FileStorage(tmp_path / "a" / "b")
    await s.open()
    assert (tmp_path / "a" / "b").is_dir()


def test_from_uri_has_no_side_effect(tmp_path: Path) -> None:
    target = tmp_path / "later"
    s = storage_from_uri(parse_uri(f"storage://file?path={target}"))
    assert isinstance(s, FileStorage) and s.root == target
    assert not target.exists()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", r"^storage://file: missing parameter\(s\): path$"),
        ("?path=", r"^storage://file: missing parameter\(s\): path$"),
        ("?path=/x&mode=7", r"^storage://file: unknown parameter\(s\): mode$"),
    ],
)
def test_from_uri_errors(query: str, message: str) -> None:
    with pytest.raises(KMSConfigError, match=message):
        storage_from_uri(parse_uri("storage://file" + query))


def _valid_id(text: str) -> bool:
    try:
        validate_key_id(text)
    except ValueError:
        return False
    return True


@given(st.text(min_size=1, max_size=120).filter(_valid_id))
def test_name_encoding_roundtrips(key_id: str) -> None:
    parts = encode_name(key_id)
    assert decode_name(parts) == key_id
    assert all(p and not p.startswith(".") and "/" not in p for p in parts)
    assert all(len(p.encode()) <= 255 for p in parts)
