"""FileStorage cannot be turned against keybroker by whoever plants entries in its directory:
links are never followed (at an id, at a chunk directory, at a lock or temp name), non-regular
files are refused without blocking, the root must be ours and private, and crash leftovers
are cleaned on start."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keybroker.kms.errors import (
    BackendError,
    DEKExists,
    DEKNotFound,
    IntegrityError,
    KMSConfigError,
)
from keybroker.kms.storage import MAX_BLOB_BYTES
from keybroker.kms.storage.file import TEMP_GRACE_SECONDS, FileStorage, encode_name

SHORT_ID = "tenant/key-1"
LONG_ID = "k" * 250  # split into chunk directories: ['kkk...+', 'kk...']
SECRET = b"outside the store: must never be read, written or removed"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "victim").write_bytes(SECRET)
    return target


def entry(root: Path, key_id: str) -> Path:
    return root.joinpath(*encode_name(key_id))


def plant_symlink_file(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "victim")


def plant_symlink_dir(path: Path, outside: Path) -> None:
    path.symlink_to(outside, target_is_directory=True)


def plant_dangling(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "created-through-link")


def plant_fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path, 0o600)


def plant_dir(path: Path, outside: Path) -> None:
    path.mkdir()


def plant_socket(path: Path, outside: Path) -> None:
    short = outside.parent / "s"  # AF_UNIX paths are short: bind here, then move it
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(short))
    sock.close()
    os.rename(short, path)


PLANTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink to a file": (plant_symlink_file, "a symlink"),
    "symlink to a directory": (plant_symlink_dir, "a symlink"),
    "dangling symlink": (plant_dangling, "a symlink"),
    "FIFO": (plant_fifo, "a FIFO"),
    "directory": (plant_dir, "a directory"),
    "socket": (plant_socket, "a socket"),
}


def outside_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == SECRET


async def within(coro: object) -> object:
    return await asyncio.wait_for(coro, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("key_id", [SHORT_ID, LONG_ID])
async def test_planted_entry_at_an_id_is_refused(
    tmp_path: Path, outside: Path, kind: str, key_id: str
) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.put("other", b"x")  # the store exists; so does a long id's chunk directory
    path = entry(root, key_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    plant, what = PLANTS[kind]
    plant(path, outside)
    with pytest.raises(IntegrityError, match=f"is {what}, not a blob file: refused"):
        await within(s.get(key_id))
    with pytest.raises(IntegrityError, match="not a blob file"):
        await within(s.replace(key_id, b"old", b"new"))
    with pytest.raises(DEKExists):  # the name is taken: link() never goes through it
        await within(s.put(key_id, b"mine"))
    outside_untouched(outside)
    assert os.path.lexists(path)


@pytest.mark.parametrize("kind", ["symlink to a directory", "dangling symlink", "FIFO"])
async def test_planted_entry_at_a_chunk_directory_is_refused(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    """A long id lives under chunk directories: a link there must not lead out of the root."""
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.open()
    chunk = root / encode_name(LONG_ID)[0]
    PLANTS[kind][0](chunk, outside)
    for call in (s.get(LONG_ID), s.put(LONG_ID, b"mine"), s.delete(LONG_ID)):
        with pytest.raises(IntegrityError, match="is a symlink or not a directory: refused"):
            await within(call)
    outside_untouched(outside)


async def test_delete_removes_a_planted_link_not_its_target(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.open()
    plant_symlink_file(entry(root, SHORT_ID.replace("/", "-")), outside)
    await s.delete(SHORT_ID.replace("/", "-"))
    outside_untouched(outside)


async def test_device_at_an_id_is_refused_unopened(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.open()
    try:
        os.mknod(entry(root, "dev"), stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs privileges")
    with pytest.raises(IntegrityError, match="is a character device, not a blob file"):
        await within(s.get("dev"))


async def test_oversized_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.open()
    entry(root, "big").write_bytes(b"b" * (MAX_BLOB_BYTES + 1))
    with pytest.raises(IntegrityError, match=f"larger than the {MAX_BLOB_BYTES}-byte blob limit"):
        await s.get("big")


# -- lock and temporary files ------------------------------------------------------------------


def lock_names() -> list[str]:
    return [f".replace-lock-{i}" for i in range(16)]


async def test_lock_links_planted_before_start_are_removed(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    for name in lock_names():
        (root / name).symlink_to(outside / f"created-{name}")
    s = FileStorage(root)
    await s.put("k", b"old")
    assert await s.replace("k", b"old", b"new")
    assert await s.get("k") == b"new"
    outside_untouched(outside)
    assert all(not (root / n).is_symlink() for n in lock_names())


@pytest.mark.parametrize("kind", ["dangling symlink", "symlink to a file", "FIFO", "directory"])
async def test_lock_planted_after_start_is_refused(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    root = tmp_path / "store"
    s = FileStorage(root)
    await s.put("k", b"old")
    for name in lock_names():
        PLANTS[kind][0](root / name, outside)
    with pytest.raises(BackendError, match=r"lock file \.replace-lock-\d+ is not a regular file"):
        await within(s.replace("k", b"old", b"new"))
    assert await s.get("k") == b"old"
    outside_untouched(outside)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


async def test_crash_leftovers_are_cleaned_on_start(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "store"
    chunk = root / encode_name(LONG_ID)[0]
    chunk.mkdir(parents=True, mode=0o700)
    os.chmod(root, 0o700)
    stale, stale_deep, fresh = root / ".tmp-dead", chunk / ".tmp-dead", root / ".tmp-writing"
    for path in (stale, stale_deep, fresh):
        path.write_bytes(b"partial")
    age(stale, TEMP_GRACE_SECONDS + 60)
    age(stale_deep, TEMP_GRACE_SECONDS + 60)
    planted = root / ".tmp-link"
    planted.symlink_to(outside / "victim")
    fifo_lock = root / ".replace-lock-3"
    os.mkfifo(fifo_lock)
    good_lock = root / ".replace-lock-4"
    good_lock.write_bytes(b"")
    age(good_lock, 10 * TEMP_GRACE_SECONDS)
    await FileStorage(root).list()
    assert not stale.exists() and not stale_deep.exists()
    assert fresh.exists(), "a young temp file may be another process's write in progress"
    assert not os.path.lexists(planted) and not os.path.lexists(fifo_lock)
    assert good_lock.exists(), "a lock another process may hold is never removed"
    outside_untouched(outside)


# -- the root -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o702, 0o777, 0o1777])
async def test_root_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, mode)
    s = FileStorage(root)
    pattern = rf"is writable by group or others \(mode {mode:04o}\): chmod 700 it"
    for call in (s.get("k"), s.put("k", b"v"), s.list(), s.open()):
        with pytest.raises(KMSConfigError, match=pattern):
            await call
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755, 0o500])
async def test_private_or_read_only_for_others_root_is_accepted(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, mode)
    with pytest.raises(DEKNotFound):
        await FileStorage(root).get("k")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
async def test_root_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    os.chown(root, 4242, -1)
    with pytest.raises(KMSConfigError, match=r"is owned by uid 4242, not by uid 0"):
        await FileStorage(root).get("k")


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


async def test_directories_are_0700_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "new"
    s = FileStorage(root)
    await s.put(LONG_ID, b"v")
    chunk = root / encode_name(LONG_ID)[0]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(chunk.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry(root, LONG_ID).stat().st_mode) == 0o600
    assert await s.get(LONG_ID) == b"v"
