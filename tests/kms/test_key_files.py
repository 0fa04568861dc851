"""Files holding keys and state: temporary files and locks never follow a planted link, and
what we write is 0600 whatever the umask."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.cli.kms import main as kms_main
from keybroker.cli.main import main as cli_main
from keybroker.kms import from_uris
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.cluster import ClusterKMS
from keybroker.kms.envelope import seal_dek
from keybroker.kms.errors import KMSConfigError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.registry import wrapper_from_uri
from keybroker.kms.rewrap import rewrap_all
from keybroker.kms.storage.memory import MemoryStorage
from keybroker.kms.strength import weakness
from keybroker.kms.uri import parse_uri
from keybroker.private_files import UnsafeFileError, open_lock, replace_atomically, write_new

VICTIM = b"a file the attacker wants overwritten"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    return path


def only_victim(victim: Path) -> None:
    assert victim.read_bytes() == VICTIM
    assert [p.name for p in victim.parent.iterdir()] == ["victim"]


# -- the helpers ---------------------------------------------------------------------------------


def test_write_new_refuses_any_existing_name(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "key"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_new(link, b"k")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(victim.parent / "created")
    with pytest.raises(FileExistsError):
        write_new(dangling, b"k")
    only_victim(victim)


def test_replace_atomically_replaces_a_link_not_its_target(
    tmp_path: Path, victim: Path, umask_022: None
) -> None:
    target = tmp_path / "state"
    target.symlink_to(victim)
    replace_atomically(target, b"new")
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    only_victim(victim)


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo", "dir"])
def test_open_lock_refuses_what_is_not_our_file(tmp_path: Path, victim: Path, kind: str) -> None:
    lock = tmp_path / "x.lock"
    if kind == "link":
        lock.symlink_to(victim)
    elif kind == "dangling":
        lock.symlink_to(victim.parent / "created")
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    with pytest.raises(UnsafeFileError, match=r"x\.lock is not a regular file owned by this user"):
        open_lock(lock)
    only_victim(victim)


# -- rewrap's state file ---------------------------------------------------------------------------


async def test_rewrap_state_temp_file_never_follows_a_link(
    tmp_path: Path, victim: Path, umask_022: None
) -> None:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    kms = ExternalKMS(LocalKeyWrapper.from_key_file(key), MemoryStorage())
    for i in range(5):
        await kms.storage.put(f"k{i}", await seal_dek(kms.wrapper, f"k{i}", os.urandom(32)))
    await kms.storage.put("k9", b"{not a blob}")  # fails: the state file is kept
    await kms.wrapper.rotate()  # type: ignore[attr-defined]
    state = tmp_path / "state.json"
    # the names the temp file used to have (pid-based: predictable), planted as links
    for name in (f".state.json.tmp-{os.getpid()}", ".state.json.tmp-1"):
        (tmp_path / name).symlink_to(victim)
    report = await rewrap_all(kms, state_path=state, concurrency=1)
    assert report.failed == 1
    assert json.loads(state.read_text())["last_done"] == "k4"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    only_victim(victim)
    await kms.close()


# -- the local KEK's keyset ----------------------------------------------------------------------


async def test_local_rotate_temp_file_never_follows_a_link(
    tmp_path: Path, victim: Path, umask_022: None
) -> None:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    (tmp_path / f".kek.tmp-{os.getpid()}-{threading.get_ident()}").symlink_to(victim)
    w = LocalKeyWrapper.from_key_file(key)
    assert await w.rotate() == "2"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert LocalKeyWrapper.from_key_file(key).versions == ["1", "2"]
    only_victim(victim)


async def test_local_rotate_refuses_a_planted_lock(tmp_path: Path, victim: Path) -> None:
    key = tmp_path / "kek"
    key.write_bytes(os.urandom(32))
    (tmp_path / "kek.lock").symlink_to(victim.parent / "created-by-lock")
    w = LocalKeyWrapper.from_key_file(key)
    with pytest.raises(KMSConfigError, match=r"kek\.lock is not a regular file owned by"):
        await w.rotate()
    only_victim(victim)


# -- keybroker kms keygen ------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_keygen_writes_a_0600_key_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "kek.bin"
    old = os.umask(umask)
    try:
        assert kms_main(["keygen", str(path)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32 and len(set(path.read_bytes())) > 8
    uri = f"kms://local?keyFile={path}"
    assert isinstance(wrapper_from_uri(parse_uri(uri)), LocalKeyWrapper)


@pytest.mark.parametrize("kind", ["file", "link", "dangling"])
def test_keygen_never_replaces_anything(
    tmp_path: Path, victim: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kek.bin"
    if kind == "file":
        path.write_bytes(b"an existing key")
    elif kind == "link":
        path.symlink_to(victim)
    else:
        path.symlink_to(victim.parent / "created")
    assert kms_main(["keygen", str(path)]) == 1
    assert "already exists: refusing to replace it" in capsys.readouterr().err
    if kind == "file":
        assert path.read_bytes() == b"an existing key"
    only_victim(victim)


# -- key files others may read ---------------------------------------------------------------------


def key_file(tmp_path: Path, mode: int, data: bytes | None = None) -> Path:
    path = tmp_path / "kek.bin"
    path.write_bytes(os.urandom(32) if data is None else data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o400 | 0o040])
def test_local_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    pattern = (
        rf"^kms://local: keyFile {path} is readable or writable by group or others"
        rf" \(mode {mode:04o}\): chmod 600 it \(or set allowReadableKeyFile=true in the URI"
    )
    with pytest.raises(KMSConfigError, match=pattern):
        wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}"))
    accepted = wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}&allowReadableKeyFile=true"))
    assert isinstance(accepted, LocalKeyWrapper)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    assert isinstance(wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}")), LocalKeyWrapper)


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
def test_override_takes_true_or_false_only(tmp_path: Path, value: str) -> None:
    path = key_file(tmp_path, 0o644)
    with pytest.raises(KMSConfigError, match="allowReadableKeyFile"):
        wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}&allowReadableKeyFile={value}"))


def seal_files(tmp_path: Path) -> tuple[Path, str]:
    master = tmp_path / "master"
    master.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    master.chmod(0o600)
    salt = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return master, salt


def test_seal_master_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    master, salt = seal_files(tmp_path)
    uri = f"kms://cluster-kms?key=file:{master}&salt={salt}"
    assert isinstance(from_uris(kms_uri=uri), ClusterKMS)
    master.chmod(0o644)
    with pytest.raises(KMSConfigError, match=r"key file .*master is readable or writable by group"):
        from_uris(kms_uri=uri)
    assert isinstance(from_uris(kms_uri=uri + "&allowReadableKeyFile=true"), ClusterKMS)


# -- weak secrets ----------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


WEAK = {
    "all zero": (bytes(32), "every byte is the same"),
    "all 0xff": (b"\xff" * 16, "every byte is the same"),
    "AAAA": (b"A" * 24, "every byte is the same"),
    "two-byte pattern": (b"\x00\x01" * 16, "repeats a 2-byte pattern"),
    "eight-byte pattern": (b"01234567" * 2, "repeats a 8-byte pattern"),
    "few distinct bytes": (b"\x00\x01\x02" * 5 + b"\x03\x00" * 9, "too few distinct bytes"),
    "password12345678": (b"password12345678", "words, sequences or repeats"),
    "changeme-secret!": (b"changeme-secret!", "words, sequences or repeats"),
    "qwertyuiopasdfgh": (b"qwertyuiopasdfgh", "words, sequences or repeats"),
    "Admin-Password-2024": (b"Admin-Password-2024", "words, sequences or repeats"),
    "letmein-letmein!": (b"letmein-letmein!", "words, sequences or repeats"),
}


@pytest.mark.parametrize("name", WEAK)
def test_weak_cluster_master_secret_is_refused(name: str) -> None:
    raw, why = WEAK[name]
    uri = f"kms://cluster-kms?key={b64(raw)}&salt={b64(os.urandom(32))}"
    with pytest.raises(KMSConfigError) as info:
        from_uris(kms_uri=uri)
    message = str(info.value)
    assert message.startswith("kms://cluster-kms: master secret (key) is too weak: ")
    assert why in message and "generate a random one" in message
    assert b64(raw) not in message and raw.decode("latin-1") not in message


@pytest.mark.parametrize("name", ["all zero", "two-byte pattern", "password12345678"])
def test_weak_local_kek_is_refused_from_a_uri(tmp_path: Path, name: str) -> None:
    raw = (WEAK[name][0] * 4)[:32]
    path = key_file(tmp_path, 0o600, raw)
    with pytest.raises(KMSConfigError, match=r"keyFile .* \(KEK version 1\) is too weak"):
        wrapper_from_uri(parse_uri(f"kms://local?keyFile={path}"))
    assert LocalKeyWrapper.from_key_file(path).versions == ["1"]  # the library reads it


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=64))
def test_random_master_secrets_pass(raw: bytes) -> None:
    """Hypothesis draws structured bytes far more often than os.urandom would; whatever it
    draws is either accepted or refused with a named rule, and a refused one really is weak."""
    why = weakness(raw)
    if why is None:
        return
    structured = (
        len(set(raw)) < len(raw) // 4 + 1
        or any(raw == (raw[:p] * len(raw))[: len(raw)] for p in range(1, len(raw) // 2 + 1))
        or all(0x20 <= b < 0x7F for b in raw)
    )
    assert structured, (raw, why)


@pytest.mark.slow
def test_urandom_secrets_pass() -> None:
    for size in (16, 32, 64):
        assert all(weakness(os.urandom(size)) is None for _ in range(2000))
        assert all(weakness(b64(os.urandom(size)).encode()) is None for _ in range(2000))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(2, 16))
def test_any_repeated_pattern_is_refused(unit: bytes, times: int) -> None:
    raw = unit * times
    if len(raw) >= 16:
        assert weakness(raw) is not None


# -- keybroker check: prefixes without a trailing '/' ----------------------------------------------

CONFIG = """
Endpoints:
  - CloudAccountName: a
    Vendor: aws
    Credentials:
      Proxy: {{AccessKey: AKIDPROXY1, SecretKey: proxy-secret-made-up-p1}}
      Real: {{AccessKey: AKIDREAL1, SecretKey: real-secret-made-up-r1}}
    KeyPolicy: {{Prefixes: {prefixes}, Operations: [get]}}
"""


def test_check_warns_on_a_prefix_without_a_trailing_slash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG.format(prefixes='["tenant-a", "tenant-b/", ""]'))
    assert cli_main(["check", "--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "KeyPolicy" in line]) == 1
    assert (
        "Endpoints[0] (a).KeyPolicy.Prefixes[0]: 'tenant-a' has no trailing '/', so it also"
        " matches ids such as 'tenant-ax/...'" in err
    )
    assert cli_main(["check", "--strict", "--config", str(path)]) == 1  # a warning fails it
    capsys.readouterr()
    path.write_text(CONFIG.format(prefixes='["tenant-a/"]'))
    assert cli_main(["check", "--config", str(path)]) == 0
    assert "KeyPolicy" not in capsys.readouterr().err
