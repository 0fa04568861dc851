"""Constellation-format (legacy) blobs open only with the migration setting: the library flag
``legacy_blobs``, the storage URI's ``legacyBlobs``, and the CLI's ``--legacy-blobs``; a
property over the JSON spellings a store could hold shows none slips past the default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.cli.kms import main as kms_main
from keybroker.kms import ExternalKMS, KMSConfigError, from_uris
from keybroker.kms.backends.local import LocalKeyWrapper
from keybroker.kms.envelope import is_legacy, open_dek, seal_dek
from keybroker.kms.errors import IntegrityError
from keybroker.kms.storage.memory import MemoryStorage

KEK = bytes(range(32))


@settings(max_examples=60, deadline=None)
@given(
    pad=st.text(alphabet=" \t\r\n", max_size=4),
    indent=st.sampled_from([None, 0, 1, 2]),
    key_id=st.text(alphabet="abcdefghij-/0123456789", min_size=1, max_size=20),
)
async def test_no_spelling_of_a_legacy_blob_opens_by_default(
    pad: str, indent: int | None, key_id: str
) -> None:
    wrapper = LocalKeyWrapper(KEK)
    dek = os.urandom(32)
    blob = await seal_dek(wrapper, key_id, dek, fmt="constellation")
    respelled = (pad + json.dumps(json.loads(blob), indent=indent) + pad).encode()
    assert is_legacy(respelled)
    with pytest.raises(IntegrityError, match="Constellation's format"):
        await open_dek(wrapper, key_id, 32, respelled)
    assert await open_dek(wrapper, key_id, 32, respelled, legacy=True) == dek


def _uris(tmp_path: Path) -> tuple[str, str]:
    kek = tmp_path / "kek.bin"
    kek.write_bytes(KEK)
    kek.chmod(0o600)
    return f"kms://local?keyFile={kek}", f"storage://file?path={tmp_path / 'deks'}"


async def test_the_uri_and_the_argument_turn_legacy_reads_on(tmp_path: Path) -> None:
    kms_uri, storage_uri = _uris(tmp_path)
    writer = from_uris(kms_uri=kms_uri, storage_uri=storage_uri, write_format="constellation")
    dek = await writer.get_dek("key-old", 32)
    await writer.close()
    strict = from_uris(kms_uri=kms_uri, storage_uri=storage_uri)
    assert isinstance(strict, ExternalKMS) and not strict.reads_legacy
    with pytest.raises(IntegrityError, match="LegacyBlobs: read"):
        await strict.get_dek("key-old", 32)
    for options in (
        {"storage_uri": storage_uri + "&legacyBlobs=read"},
        {"storage_uri": storage_uri, "legacy_blobs": "read"},
    ):
        kms = from_uris(kms_uri=kms_uri, **options)  # type: ignore[arg-type]
        assert isinstance(kms, ExternalKMS) and kms.reads_legacy
        assert await kms.get_dek("key-old", 32) == dek
        await kms.close()
    off = from_uris(kms_uri=kms_uri, storage_uri=storage_uri + "&legacyBlobs=off")
    assert isinstance(off, ExternalKMS) and not off.reads_legacy
    await strict.close()
    await off.close()


def test_a_bad_setting_is_refused(tmp_path: Path) -> None:
    kms_uri, storage_uri = _uris(tmp_path)
    with pytest.raises(KMSConfigError, match="legacyBlobs must be 'off' or 'read'"):
        from_uris(kms_uri=kms_uri, storage_uri=storage_uri + "&legacyBlobs=yes")
    with pytest.raises(KMSConfigError, match="legacy_blobs must be 'off' or 'read'"):
        from_uris(kms_uri=kms_uri, storage_uri=storage_uri, legacy_blobs="on")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="legacy_blobs must be 'off' or 'read'"):
        ExternalKMS(LocalKeyWrapper(KEK), MemoryStorage(), legacy_blobs="maybe")  # type: ignore[arg-type]


def test_the_cli_reads_and_migrates_only_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kms_uri, storage_uri = _uris(tmp_path)
    base = ["--kms", kms_uri, "--storage", storage_uri]
    get = ["get-dek", *base, "--id", "key-old", "--size", "32"]
    assert kms_main([*get, "--write-format", "constellation"]) == 0
    dek = capsys.readouterr().out.strip()
    assert kms_main(get) == 1
    assert "Constellation's format" in capsys.readouterr().err
    assert kms_main([*get, "--legacy-blobs", "read"]) == 0
    assert capsys.readouterr().out.strip() == dek
    assert kms_main(["rewrap", *base]) == 1  # refused, left as it is
    assert "1 failed" in capsys.readouterr().out
    assert kms_main(["rewrap", *base, "--legacy-blobs", "read"]) == 0
    assert "1 rewrapped" in capsys.readouterr().out
    assert kms_main(get) == 0  # bound now: the default reads it
    assert capsys.readouterr().out.strip() == dek
