"""PKCS#11 key wrapper against a real SoftHSM2 token (the module is loaded in-process).

Token administration (keys without an id, relabelling, duplicate labels) runs in a separate
Python process, as an operator's tool would, so its login state stays apart from ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.pkcs11 import PKCS11Wrapper
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests import logscan
from tests.kms import pkcs11_stress as stress
from tests.kms.hsm_servers import SoftHSM, softhsm_tokens
from tests.kms.wrapper_conformance import KeyWrapperConformance

TOKEN, OTHER = "kb-main", "kb-other"


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    with softhsm_tokens(tmp_path_factory.mktemp("softhsm"), TOKEN, OTHER) as tokens:
        yield tokens


def uri_for(hsm: SoftHSM, key: str, **extra: str) -> str:
    params = {"module": hsm.module, "tokenLabel": TOKEN, "pin": hsm.pin, "keyLabel": key}
    params.update(extra)
    return "kms://pkcs11?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def label() -> str:
    return f"kek-{os.urandom(4).hex()}"


@pytest.fixture
async def make(hsm: SoftHSM) -> AsyncIterator[list[PKCS11Wrapper]]:
    made: list[PKCS11Wrapper] = []
    yield made
    for w in made:
        await w.close()


def build(made: list[PKCS11Wrapper], hsm: SoftHSM, key: str, **extra: str) -> PKCS11Wrapper:
    w = PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, key, **extra)))
    made.append(w)
    return w


@pytest.fixture(scope="session")
def session_key(hsm: SoftHSM) -> str:
    key = label()
    hsm.admin(
        TOKEN, f"session.generate_key(KeyType.AES, 256, label={key!r}, id=b'\\1', store=True)"
    )
    return key


@pytest.fixture
async def wrapper(hsm: SoftHSM, session_key: str) -> AsyncIterator[PKCS11Wrapper]:
    w = PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, session_key)))
    yield w
    await w.close()


class TestPKCS11Conformance(KeyWrapperConformance):
    pass


# -- URI ------------------------------------------------------------------------------------


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        PKCS11Wrapper.from_uri(parse_uri("kms://pkcs11?keyLabel=k"))
    assert "missing parameter(s): module, tokenLabel, pin" in str(exc.value)


def test_uri_rejects_unknown_parameter(hsm: SoftHSM) -> None:
    with pytest.raises(KMSConfigError, match=r"unknown parameter.*slot"):
        PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, "k", slot="0")))


@pytest.mark.parametrize("value", ["yes", "True", "1"])
def test_create_must_be_true_or_false(hsm: SoftHSM, value: str) -> None:
    with pytest.raises(KMSConfigError, match="parameter create must be true or false"):
        PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, "k", create=value)))


def test_pin_from_unset_environment_variable(hsm: SoftHSM) -> None:
    os.environ.pop("KB_TEST_HSM_PIN", None)
    with pytest.raises(KMSConfigError, match="pin: environment variable KB_TEST_HSM_PIN"):
        PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, "k", pin="env:KB_TEST_HSM_PIN")))


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pkcs11", None)
    with pytest.raises(MissingExtra, match=r"keybroker\[pkcs11\]"):
        PKCS11Wrapper("m.so", "t", "k", pin=Secret("1"))


def test_repr_hides_the_pin(hsm: SoftHSM) -> None:
    w = PKCS11Wrapper.from_uri(parse_uri(uri_for(hsm, "k")))
    assert hsm.pin not in repr(w) and hsm.pin not in repr(vars(w))


# -- opening --------------------------------------------------------------------------------


async def test_missing_key_without_create(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    w = build(make, hsm, "no-such-key")
    with pytest.raises(KMSConfigError, match=r"no AES key labelled 'no-such-key'.*create=true"):
        await w.wrap(b"k" * 32, b"")


async def test_create_makes_a_sensitive_key_once(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    key = label()
    first = build(make, hsm, key, create="true")
    wrapped = await first.wrap(b"c" * 32, b"a")
    assert wrapped.kek_id == f"{TOKEN}/{key}"
    assert len(bytes.fromhex(wrapped.kek_version)) == 8
    await first.close()
    # A second wrapper (create=true again) finds the same key instead of making another.
    again = build(make, hsm, key, create="true")
    assert await again.unwrap(wrapped, b"a") == b"c" * 32
    report = hsm.admin(
        TOKEN,
        f"keys = list(session.get_objects({{Attribute.LABEL: {key!r}}}))\n"
        "k = keys[0]\n"
        "print(len(keys), k[Attribute.SENSITIVE], k[Attribute.EXTRACTABLE], k[Attribute.TOKEN],"
        " k[Attribute.VALUE_LEN], k[Attribute.ID].hex())\n"
        "try:\n    k[Attribute.VALUE]\nexcept pkcs11.exceptions.AttributeSensitive:\n"
        "    print('value hidden')\n",
    )
    assert report.split("\n")[:2] == [f"1 True False True 32 {wrapped.kek_version}", "value hidden"]


async def test_no_such_token(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    w = build(make, hsm, "k", tokenLabel="nope")
    with pytest.raises(KMSConfigError, match="no token labelled 'nope'"):
        await w.open()


async def test_wrong_pin_is_refused_without_the_pin(
    hsm: SoftHSM, make: list[PKCS11Wrapper]
) -> None:
    wrong = "wrong-" + os.urandom(4).hex()
    logscan.register(wrong)
    w = build(make, hsm, "k", tokenLabel=OTHER, pin=wrong)
    with pytest.raises(KMSConfigError, match=f"the PIN for token '{OTHER}' was refused") as exc:
        await w.open()
    assert wrong not in str(exc.value) and hsm.pin not in str(exc.value)
    # The right PIN still works afterwards (nothing was left half-open).
    ok = build(make, hsm, label(), tokenLabel=OTHER, create="true")
    assert await ok.unwrap(await ok.wrap(b"p" * 16, b""), b"") == b"p" * 16


async def test_module_that_cannot_be_loaded(
    hsm: SoftHSM, make: list[PKCS11Wrapper], tmp_path: Path
) -> None:
    (tmp_path / "not-a-module.so").write_bytes(b"\x7fELF garbage")
    for module in (str(tmp_path / "absent.so"), str(tmp_path / "not-a-module.so")):
        w = build(make, hsm, "k", module=module)
        with pytest.raises(KMSConfigError, match="cannot load module"):
            await w.open()


async def test_duplicate_labels_are_refused(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    key = label()
    hsm.admin(
        TOKEN,
        f"for i in (1, 2):\n"
        f"    session.generate_key(KeyType.AES, 256, label={key!r}, id=bytes([i]), store=True)",
    )
    with pytest.raises(KMSConfigError, match=f"several AES keys are labelled '{key}'"):
        await build(make, hsm, key).open()


async def test_key_that_may_not_decrypt_is_refused(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    key = label()
    hsm.admin(
        TOKEN,
        f"session.generate_key(KeyType.AES, 256, label={key!r}, store=True, "
        "capabilities=MechanismFlag.ENCRYPT)",
    )
    with pytest.raises(KMSConfigError, match="decryption is not allowed"):
        await build(make, hsm, key).open()


async def test_key_without_id(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    key = label()
    hsm.admin(TOKEN, f"session.generate_key(KeyType.AES, 128, label={key!r}, store=True)")
    w = build(make, hsm, key)
    wrapped = await w.wrap(b"n" * 32, b"a")
    assert wrapped.kek_version == "noid"
    assert await w.unwrap(wrapped, b"a") == b"n" * 32


# -- behaviour ------------------------------------------------------------------------------


async def test_rotation_by_relabelling(hsm: SoftHSM, make: list[PKCS11Wrapper]) -> None:
    key = label()
    w = build(make, hsm, key, create="true")
    old = await w.wrap(b"o" * 32, b"id=1")
    await w.close()
    hsm.admin(
        TOKEN,
        f"session.get_key(label={key!r})[Attribute.LABEL] = {key + '-retired'!r}\n"
        f"session.generate_key(KeyType.AES, 256, label={key!r}, id=b'new-key', store=True)",
    )
    w = build(make, hsm, key)
    new = await w.wrap(b"n" * 32, b"id=1")
    assert new.kek_version == b"new-key".hex() != old.kek_version
    assert await w.unwrap(old, b"id=1") == b"o" * 32  # found by its CKA_ID
    assert await w.unwrap(new, b"id=1") == b"n" * 32
    with pytest.raises(IntegrityError):  # the new key cannot open the old blob
        await w.unwrap(dataclasses.replace(old, kek_version=new.kek_version), b"id=1")


@pytest.mark.parametrize("version", ["ffffffff", "0G", "01 02", "0A", "", "noid", "x" * 600])
async def test_unknown_key_version_is_an_integrity_error(
    wrapper: PKCS11Wrapper, version: str
) -> None:
    wrapped = await wrapper.wrap(b"v" * 32, b"a")
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(dataclasses.replace(wrapped, kek_version=version), b"a")


async def test_concurrent_use_of_one_token(
    hsm: SoftHSM, session_key: str, make: list[PKCS11Wrapper]
) -> None:
    a, b = build(make, hsm, session_key), build(make, hsm, session_key)
    keys = [os.urandom(32) for _ in range(40)]
    wrapped = await asyncio.gather(
        *(w.wrap(k, b"c") for w, k in zip([a, b] * 20, keys, strict=True))
    )
    await a.close()  # b keeps working: the shared session stays logged in while b uses it
    assert await asyncio.gather(*(b.unwrap(x, b"c") for x in wrapped)) == keys


async def test_reopens_after_close(wrapper: PKCS11Wrapper) -> None:
    wrapped = await wrapper.wrap(b"r" * 32, b"")
    await wrapper.close()
    assert await wrapper.unwrap(wrapped, b"") == b"r" * 32


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(
    hsm: SoftHSM, session_key: str, tmp_path: Path, fmt: WriteFormat
) -> None:
    (tmp_path / "pin").write_text(hsm.pin + "\n")
    uri = uri_for(hsm, session_key, pin=f"file:{tmp_path / 'pin'}")
    built = wrapper_from_uri(parse_uri(uri))
    assert isinstance(built, PKCS11Wrapper)
    await built.close()
    kms = from_uris(kms_uri=uri, storage_uri="storage://memory", write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 64) != first
    finally:
        await kms.close()


def test_bad_uri_fails_before_storage() -> None:
    with pytest.raises(KMSConfigError, match="kms://pkcs11: missing parameter"):
        from_uris(kms_uri="kms://pkcs11?module=x", storage_uri="storage://memory")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.one_of(st.text(max_size=20), st.binary(max_size=9).map(bytes.hex)))
async def test_recorded_versions_fail_only_with_integrity_errors(
    wrapper: PKCS11Wrapper, version: str
) -> None:
    wrapped = await wrapper.wrap(b"f" * 16, b"")
    relabelled = dataclasses.replace(wrapped, kek_version=version)
    if version == wrapped.kek_version:
        assert await wrapper.unwrap(relabelled, b"") == b"f" * 16
    else:
        with pytest.raises(IntegrityError):
            await wrapper.unwrap(relabelled, b"")


def test_many_threads_on_two_tokens_never_meet_in_the_module(hsm: SoftHSM) -> None:
    """SoftHSM2, initialised without locking arguments, takes no locks of its own: two calls
    at once (a key's attribute read while another thread encrypts on the same session) failed
    with CKR_GENERAL_ERROR or crashed the process.  Eight users open, wrap, unwrap and close
    on two tokens at once, in a separate process so that a crash fails only this test."""
    rounds = 20
    tokens = f"{TOKEN},{OTHER}"
    out = subprocess.run(
        [sys.executable, "-m", "tests.kms.pkcs11_stress", hsm.module, tokens, label(), str(rounds)],
        env={**os.environ, "SOFTHSM2_CONF": str(hsm.conf), "KB_PIN": hsm.pin},
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == [str(stress.USERS * rounds * stress.KEYS_PER_ROUND)]
