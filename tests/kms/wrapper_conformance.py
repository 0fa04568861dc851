"""The one conformance suite every KeyWrapper passes.

Subclass it and provide an async fixture ``wrapper`` yielding a ready KeyWrapper (closed
afterwards).  Set the class attribute ``binds_aad = False`` for a backend that cannot bind
associated data (then only the roundtrip with aad is checked, not the mismatch).
The class name must not start with ``Test`` so pytest only collects the subclasses.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from keybroker.kms.base import KeyWrapper, WrappedKey
from keybroker.kms.errors import IntegrityError


class KeyWrapperConformance:
    """Behaviour every :class:`KeyWrapper` must have."""

    binds_aad: bool = True

    async def test_is_a_key_wrapper(self, wrapper: KeyWrapper) -> None:
        assert isinstance(wrapper, KeyWrapper)
        assert isinstance(type(wrapper).name, str) and type(wrapper).name

    @pytest.mark.parametrize("size", [16, 32, 64])
    async def test_roundtrip(self, wrapper: KeyWrapper, size: int) -> None:
        key = os.urandom(size)
        wrapped = await wrapper.wrap(key, b"aad-1")
        assert isinstance(wrapped, WrappedKey)
        assert key not in wrapped.ciphertext
        assert await wrapper.unwrap(wrapped, b"aad-1") == key

    async def test_roundtrip_empty_aad(self, wrapper: KeyWrapper) -> None:
        key = os.urandom(32)
        assert await wrapper.unwrap(await wrapper.wrap(key, b""), b"") == key

    async def test_wrapping_is_randomised(self, wrapper: KeyWrapper) -> None:
        key = os.urandom(32)
        a = await wrapper.wrap(key, b"x")
        b = await wrapper.wrap(key, b"x")
        assert a.ciphertext != b.ciphertext

    async def test_records_kek_id_and_version(self, wrapper: KeyWrapper) -> None:
        wrapped = await wrapper.wrap(os.urandom(32), b"")
        assert isinstance(wrapped.kek_id, str) and wrapped.kek_id
        assert isinstance(wrapped.kek_version, str) and wrapped.kek_version

    async def test_aad_mismatch_raises_integrity_error(self, wrapper: KeyWrapper) -> None:
        if not self.binds_aad:
            pytest.skip("backend does not bind associated data")
        wrapped = await wrapper.wrap(os.urandom(32), b"id=a")
        with pytest.raises(IntegrityError):
            await wrapper.unwrap(wrapped, b"id=b")
        with pytest.raises(IntegrityError):
            await wrapper.unwrap(wrapped, b"")

    @pytest.mark.parametrize("where", [0, -1, "middle"])
    async def test_flipped_bit_raises_integrity_error(
        self, wrapper: KeyWrapper, where: int | str
    ) -> None:
        wrapped = await wrapper.wrap(os.urandom(32), b"aad")
        data = bytearray(wrapped.ciphertext)
        index = len(data) // 2 if where == "middle" else int(where)
        data[index] ^= 0x01
        with pytest.raises(IntegrityError):
            await wrapper.unwrap(dataclasses.replace(wrapped, ciphertext=bytes(data)), b"aad")

    async def test_truncated_raises_integrity_error(self, wrapper: KeyWrapper) -> None:
        wrapped = await wrapper.wrap(os.urandom(32), b"aad")
        for cut in (b"", wrapped.ciphertext[:1], wrapped.ciphertext[:-1]):
            with pytest.raises(IntegrityError):
                await wrapper.unwrap(dataclasses.replace(wrapped, ciphertext=cut), b"aad")

    async def test_close_is_idempotent(self, wrapper: KeyWrapper) -> None:
        await wrapper.close()
        await wrapper.close()
