"""Azure Key Vault key wrapper, driven by azure-keyvault-keys and azure-identity.

The server is a protocol fake (tests/kms/fake_azure_kv.py), not Microsoft's service: no Key
Vault emulator exists.  Over HTTPS (a throw-away CA), it plays Entra ID for the real
``ClientSecretCredential`` (OpenID discovery + client-credentials token grant) and Key Vault
for the real ``KeyClient``/``CryptographyClient`` (bearer challenge, JSON web keys, RSA-OAEP
wrap/unwrap with real RSA keys and key versions, Rotate Key and access-policy denials), so
``rotate``, ``keybroker kms rotate`` and a rewrap after it run against the same wire format.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from keybroker.cli.kms import main
from keybroker.kms import from_uris, wrapper_from_uri
from keybroker.kms.backends.azure import VAULT_TYPES, AzureKeyVaultWrapper
from keybroker.kms.envelope import WriteFormat
from keybroker.kms.errors import BackendError, IntegrityError, KMSConfigError, MissingExtra
from keybroker.kms.uri import parse_uri
from keybroker.secret import Secret
from tests import logscan
from tests.kms.fake_azure_kv import FakeKeyVault
from tests.kms.tls_ca import TestCA
from tests.kms.wrapper_conformance import KeyWrapperConformance

TENANT, CLIENT = "72f988bf-0000-4000-8000-000000000001", "kb-client"
SECRET = "s3cr3t+/%value"  # characters that break double URL-decoding


@dataclasses.dataclass(frozen=True)
class AzureEnv:
    fake: FakeKeyVault
    url: str
    ca: TestCA


@pytest.fixture(scope="session")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEnv]:
    ca = TestCA.create(tmp_path_factory.mktemp("azure-ca"))
    logscan.register(SECRET)
    fake = FakeKeyVault(
        ca, tenant=TENANT, client_id=CLIENT, client_secret=SECRET, on_token=logscan.register
    )
    with fake.serve() as url:
        yield AzureEnv(fake, url, ca)


def uri_for(env: AzureEnv | None, key: str, *, without: str = "", **override: str) -> str:
    params = {
        "tenantID": TENANT,
        "clientID": CLIENT,
        "clientSecret": SECRET,
        "vaultName": "kbvault",
        "vaultType": "vault.azure.net",
        "keyName": key,
    }
    if env is not None:
        params |= {"endpoint": env.url, "authorityHost": env.url, "caFile": str(env.ca.ca_path)}
    params |= override
    params.pop(without, None)
    return "kms://azure?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def new_key(env: AzureEnv) -> str:
    name = f"k-{os.urandom(4).hex()}"
    env.fake.create_key(name)
    return name


@pytest.fixture
async def make() -> AsyncIterator[list[AzureKeyVaultWrapper]]:
    made: list[AzureKeyVaultWrapper] = []
    yield made
    for w in made:
        await w.close()


def build(made: list[AzureKeyVaultWrapper], uri: str) -> AzureKeyVaultWrapper:
    w = AzureKeyVaultWrapper.from_uri(parse_uri(uri))
    made.append(w)
    return w


@pytest.fixture(scope="session")
def conformance_key(azure: AzureEnv) -> str:
    return new_key(azure)


@pytest.fixture
async def wrapper(azure: AzureEnv, conformance_key: str) -> AsyncIterator[AzureKeyVaultWrapper]:
    w = AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(azure, conformance_key)))
    yield w
    await w.close()


class TestAzureKeyVaultConformance(KeyWrapperConformance):
    binds_aad = False  # RSA-OAEP has no associated data


# -- URI ------------------------------------------------------------------------------------


def test_wrapper_declares_it_does_not_bind_aad() -> None:
    assert AzureKeyVaultWrapper.binds_aad is False


def test_uri_names_every_missing_parameter() -> None:
    with pytest.raises(KMSConfigError) as exc:
        AzureKeyVaultWrapper.from_uri(parse_uri("kms://azure?tenantID=t&keyName=k"))
    for name in ("clientID", "clientSecret", "vaultName", "vaultType"):
        assert name in str(exc.value)


def test_uri_rejects_unknown_parameter() -> None:
    with pytest.raises(KMSConfigError, match="keyVersion"):
        AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(None, "k", keyVersion="1")))


def test_bad_vault_type_lists_the_allowed_ones() -> None:
    with pytest.raises(KMSConfigError) as exc:
        AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(None, "k", vaultType="evil.example")))
    for suffix in VAULT_TYPES:
        assert suffix in str(exc.value)
    assert "evil.example" not in str(exc.value)
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize("vault_type", sorted(VAULT_TYPES))
async def test_vault_url_is_built_from_name_and_type(vault_type: str) -> None:
    w = AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(None, "k1", vaultType=vault_type)))
    assert w.kek_id == f"https://kbvault.{vault_type}/keys/k1"
    await w.close()


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.keyvault.keys", None)
    with pytest.raises(MissingExtra, match=r"keybroker\[azure\]"):
        AzureKeyVaultWrapper.from_uri(parse_uri(uri_for(None, "k")))


# -- behaviour ------------------------------------------------------------------------------


async def test_version_remembered_across_rotation(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    key = new_key(azure)
    w = build(make, uri_for(azure, key))
    old = await w.wrap(b"o" * 32, b"")
    assert old.kek_id == f"{azure.url}/keys/{key}"
    assert old.kek_version == azure.fake.keys[key].order[-1]
    rotated = azure.fake.rotate(key)
    new = await w.wrap(b"n" * 32, b"")
    assert new.kek_version == rotated != old.kek_version
    azure.fake.calls.clear()
    assert await w.unwrap(old, b"") == b"o" * 32
    assert await w.unwrap(new, b"") == b"n" * 32
    # unwrapKey runs in the vault, on the exact version each blob recorded
    assert f"POST /keys/{key}/{old.kek_version}/unwrapkey" in azure.fake.calls
    assert f"POST /keys/{key}/{new.kek_version}/unwrapkey" in azure.fake.calls


@pytest.mark.slow
async def test_rotate_makes_a_new_latest_version(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    key = f"k-{os.urandom(4).hex()}"
    azure.fake.create_key(key, size=3072)
    w = build(make, uri_for(azure, key))
    old = await w.wrap(b"o" * 32, b"")
    azure.fake.calls.clear()
    version = await w.rotate()
    assert azure.fake.calls == [f"POST /keys/{key}/rotate"]
    assert version == azure.fake.keys[key].order[-1] != old.kek_version
    assert azure.fake.keys[key].versions[version].key_size == 3072  # same type and size
    new = await w.wrap(b"n" * 32, b"")
    assert new.kek_version == version
    assert await w.unwrap(old, b"") == b"o" * 32
    assert await w.unwrap(new, b"") == b"n" * 32


async def test_rotate_without_permission_is_a_backend_error(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    key = new_key(azure)
    w = build(make, uri_for(azure, key))
    azure.fake.denied = {"rotate"}
    try:
        with pytest.raises(BackendError) as exc:
            await w.rotate()
    finally:
        azure.fake.denied = set()
    assert str(exc.value) == "Azure Key Vault rotateKey failed: HTTP 403 Forbidden"
    assert len(azure.fake.keys[key].order) == 1


async def test_rotate_missing_key_is_a_config_error(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    w = build(make, uri_for(azure, "never-created"))
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.rotate()


@pytest.mark.slow
def test_cli_rotate_then_rewrap(
    azure: AzureEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = new_key(azure)
    old = azure.fake.keys[key].order[-1]
    kms, storage = uri_for(azure, key), f"storage://file?path={tmp_path / 'store'}"
    get = ["get-dek", "--kms", kms, "--storage", storage, "--size", "32", "--id"]
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    deks = capsys.readouterr().out
    assert main(["rotate", "--kms", kms]) == 0
    version = azure.fake.keys[key].order[-1]
    assert capsys.readouterr() == (f"{version}\n", "")

    assert main(["rewrap", "--kms", kms, "--storage", storage]) == 0
    assert capsys.readouterr().out == (
        f"rewrap: 2 rewrapped, 0 skipped, 0 failed of 2 (KEK version {version})\n"
    )
    azure.fake.calls.clear()
    assert main([*get, "a"]) == main([*get, "b"]) == 0
    assert capsys.readouterr().out == deks
    unwraps = [call for call in azure.fake.calls if call.endswith("/unwrapkey")]
    assert old != version  # the blobs no longer need the old version
    assert unwraps == [f"POST /keys/{key}/{version}/unwrapkey"] * 2


async def test_wrap_is_rsa_oaep_256_under_the_vault_key(
    azure: AzureEnv, wrapper: AzureKeyVaultWrapper, conformance_key: str
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    wrapped = await wrapper.wrap(b"r" * 32, b"")
    private = azure.fake.keys[conformance_key].versions[wrapped.kek_version]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert private.decrypt(wrapped.ciphertext, oaep) == b"r" * 32


async def test_unknown_version_is_a_config_error(
    wrapper: AzureKeyVaultWrapper,
) -> None:
    wrapped = await wrapper.wrap(b"v" * 32, b"")
    with pytest.raises(KMSConfigError, match="does not exist"):
        await wrapper.unwrap(dataclasses.replace(wrapped, kek_version="0" * 32), b"")
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(dataclasses.replace(wrapped, kek_version="../x"), b"")


async def test_disabled_key_is_a_backend_error(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    key = new_key(azure)
    w = build(make, uri_for(azure, key))
    wrapped = await w.wrap(b"d" * 32, b"")
    azure.fake.set_enabled(key, False)
    with pytest.raises(BackendError, match="disabled"):
        await w.wrap(b"d" * 32, b"")
    with pytest.raises(BackendError, match="disabled"):
        await w.unwrap(wrapped, b"")


async def test_missing_key_is_a_config_error(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    w = build(make, uri_for(azure, "never-created"))
    with pytest.raises(KMSConfigError, match="does not exist"):
        await w.wrap(b"m" * 32, b"")


async def test_wrong_secret_is_a_backend_error_without_the_secret(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    wrong = "wrong-" + os.urandom(8).hex()
    logscan.register(wrong)
    w = build(make, uri_for(azure, new_key(azure), clientSecret=wrong))
    with pytest.raises(BackendError, match="authentication") as exc:
        await w.wrap(b"w" * 32, b"")
    assert wrong not in str(exc.value) and SECRET not in str(exc.value)


async def test_secret_from_env_reference(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_TEST_AZURE_SECRET", SECRET)
    w = build(make, uri_for(azure, new_key(azure), clientSecret="env:KB_TEST_AZURE_SECRET"))
    assert await w.unwrap(await w.wrap(b"s" * 32, b""), b"") == b"s" * 32


async def test_environment_does_not_override_uri(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_CLIENT_ID", "someone-else")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")
    w = build(make, uri_for(azure, new_key(azure)))
    assert await w.unwrap(await w.wrap(b"e" * 32, b""), b"") == b"e" * 32


async def test_direct_construction_with_client_secret(azure: AzureEnv) -> None:
    key = new_key(azure)
    w = AzureKeyVaultWrapper.with_client_secret(
        azure.url,
        key,
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=Secret(SECRET),
        authority=azure.url,
        connection_verify=str(azure.ca.ca_path),
    )
    try:
        assert await w.unwrap(await w.wrap(b"c" * 16, b""), b"") == b"c" * 16
    finally:
        await w.close()


@pytest.mark.slow
async def test_untrusted_tls_is_a_backend_error(
    azure: AzureEnv, make: list[AzureKeyVaultWrapper]
) -> None:
    # Without caFile the system store is used, which does not know the test CA.
    w = build(make, uri_for(azure, new_key(azure), without="caFile"))
    with pytest.raises(BackendError):
        await w.wrap(b"t" * 32, b"")


@pytest.mark.parametrize("fmt", ["keybroker", "constellation"])
async def test_external_kms_end_to_end(azure: AzureEnv, fmt: WriteFormat) -> None:
    uri = uri_for(azure, new_key(azure))
    built = wrapper_from_uri(parse_uri(uri))
    await built.close()
    assert isinstance(built, AzureKeyVaultWrapper)
    # Constellation's format carries no signature: only to a trusted store (RSA cannot bind)
    storage_uri = "storage://memory" + ("?trustedStore=true" if fmt == "constellation" else "")
    kms = from_uris(kms_uri=uri, storage_uri=storage_uri, write_format=fmt)
    try:
        first = await kms.get_dek("key-a", 32)
        assert await kms.get_dek("key-a", 32) == first
        assert await kms.get_dek("key-b", 32) != first
    finally:
        await kms.close()


async def test_full_key_id_as_version_is_accepted_for_this_key_only(
    wrapper: AzureKeyVaultWrapper,
) -> None:
    wrapped = await wrapper.wrap(b"i" * 32, b"")
    full = f"{wrapper.kek_id}/{wrapped.kek_version}"
    assert await wrapper.unwrap(dataclasses.replace(wrapped, kek_version=full), b"") == b"i" * 32
    other = f"{wrapper.kek_id}-other/{wrapped.kek_version}"
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(dataclasses.replace(wrapped, kek_version=other), b"")


@settings(max_examples=50, deadline=None)
@given(
    vault_type=st.text(max_size=40),
    extra=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True),
        st.text(max_size=10),
        max_size=3,
    ),
)
def test_uri_checks_fail_only_with_config_errors(vault_type: str, extra: dict[str, str]) -> None:
    assume(not {"vaultType", "keyName"} & set(extra))
    uri = uri_for(None, "k", vaultType=vault_type, **extra)
    try:
        AzureKeyVaultWrapper.validate_uri(parse_uri(uri))
    except KMSConfigError as exc:
        assert SECRET not in str(exc)
        return
    assert vault_type in VAULT_TYPES
