"""Secret references in credential fields: ${NAME}, ${file:...}, ${sealed:...}, $${ escapes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.config import secrets as config_secrets
from keybroker.config.loader import loads
from keybroker.config.secrets import register_secret_resolver
from keybroker.errors import ConfigError, KMSError
from keybroker.settings import Config

REAL = "config.yml:6: Endpoints[0].Credentials.Real"


def config(real: str) -> str:
    return textwrap.dedent(
        f"""\
        Endpoints:
          - CloudAccountName: acct
            Vendor: aws
            Credentials:
              Proxy: {{AccessKey: AKIDPROXY0000000001, SecretKey: proxy-secret-made-up-1}}
              Real: {real}
        """
    )


def load_real(real: str, env: dict[str, str] | None = None) -> Config:
    return loads(config(real), "config.yml", env=env or {})


def problems(real: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_real(real, env)
    return info.value.problems


def test_environment_variables() -> None:
    env = {"REAL_AK": "AKIAFROMENV000000001", "REAL_SK": "sk/from+env", "TOKEN": "token-from-env"}
    cfg = load_real(
        "{AccessKey: '${REAL_AK}', SecretKey: '${REAL_SK}', AccessToken: '${TOKEN}'}", env
    )
    real = cfg.endpoints[0].real
    assert real.access_key == "AKIAFROMENV000000001"
    assert real.secret_key.reveal() == "sk/from+env"
    assert real.access_token is not None and real.access_token.reveal() == "token-from-env"


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYBROKER_TEST_REAL_SK", "from-process-env")
    cfg = loads(config("{AccessKey: AKIAREAL00000000001, SecretKey: '${KEYBROKER_TEST_REAL_SK}'}"))
    assert cfg.endpoints[0].real.secret_key.reveal() == "from-process-env"


def test_unset_or_empty_variable() -> None:
    assert problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${NAME}'}") == [
        f"{REAL}.SecretKey: environment variable NAME is not set"
    ]
    assert problems("{AccessKey: '${AK}', SecretKey: '${SK}'}", {"AK": ""}) == [
        f"{REAL}.AccessKey: environment variable AK is empty",
        f"{REAL}.SecretKey: environment variable SK is not set",
    ]


def test_files(tmp_path: Path) -> None:
    sk = tmp_path / "real_sk"
    sk.write_text("line-one\nsecret-from-file\n\n")  # only one trailing newline is removed
    token = tmp_path / "token"
    token.write_bytes(b"tok-from-file\r\n")
    cfg = load_real(
        f"{{AccessKey: AKIAREAL00000000001, SecretKey: '${{file:{sk}}}', "
        f"ClientSecret: '${{file:{token}}}'}}"
    )
    real = cfg.endpoints[0].real
    assert real.secret_key.reveal() == "line-one\nsecret-from-file\n"
    assert real.client_secret is not None and real.client_secret.reveal() == "tok-from-file"


def test_file_problems_name_the_path_never_the_content(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffhunter2")
    big = tmp_path / "big"
    big.write_text("x" * (64 * 1024 + 1))
    cases = {
        missing: f"cannot read secret file '{missing}': No such file or directory",
        empty: f"secret file '{empty}' is empty",
        binary: f"secret file '{binary}' is not UTF-8 text",
        big: f"secret file '{big}' is larger than 65536 bytes",
        tmp_path: f"cannot read secret file '{tmp_path}': Is a directory",
    }
    for path, message in cases.items():
        found = problems(f"{{AccessKey: AKIAREAL00000000001, SecretKey: '${{file:{path}}}'}}")
        assert found == [f"{REAL}.SecretKey: {message}"]
        assert "hunter2" not in found[0]


def test_escape_gives_a_literal() -> None:
    cfg = load_real(
        "{AccessKey: AKIAREAL00000000001, SecretKey: '$${REAL_SK}', AccessToken: '$$${xyz}'}"
    )
    real = cfg.endpoints[0].real
    assert real.secret_key.reveal() == "${REAL_SK}"
    assert real.access_token is not None and real.access_token.reveal() == "$${xyz}"
    # "$" elsewhere is ordinary text.
    cfg = load_real("{AccessKey: AKIAREAL00000000001, SecretKey: 'a${B}c$'}")
    assert cfg.endpoints[0].real.secret_key.reveal() == "a${B}c$"


@pytest.mark.parametrize("value", ["${}", "${not a name}", "${REAL_SK", "${1ABC}", "${Vault:x}"])
def test_malformed_references_never_echo_the_value(value: str) -> None:
    found = problems(f"{{AccessKey: AKIAREAL00000000001, SecretKey: '{value}'}}")
    assert found == [
        f"{REAL}.SecretKey: not a valid secret reference (use ${{NAME}} or ${{prefix:...}}; "
        "write $${ for a literal value starting with ${)"
    ]


def test_unknown_prefix() -> None:
    found = problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${vault:secret/x}'}")
    assert found == [
        f"{REAL}.SecretKey: unknown secret reference '${{vault:...}}' (known: file, sealed)"
    ]


def test_sealed_values_need_a_kms() -> None:
    found = problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${sealed:v1:AAAA}'}")
    assert found == [f"{REAL}.SecretKey: sealed values need a KMS (not configured)"]


@pytest.fixture
def restore_resolvers() -> Iterator[None]:
    saved = dict(config_secrets._resolvers)
    yield
    config_secrets._resolvers.clear()
    config_secrets._resolvers.update(saved)


@pytest.mark.usefixtures("restore_resolvers")
def test_registered_resolver() -> None:
    seen: list[str] = []

    def unseal(ref: str) -> str:
        seen.append(ref)
        if ref == "bad":
            raise KMSError("ciphertext was not sealed by this key")
        if ref == "crash":
            raise RuntimeError("boom with hunter2 inside")
        return ref.upper()

    register_secret_resolver("sealed", unseal)
    cfg = load_real("{AccessKey: AKIAREAL00000000001, SecretKey: '${sealed:v1:abc}'}")
    assert cfg.endpoints[0].real.secret_key.reveal() == "V1:ABC"
    assert seen == ["v1:abc"]
    # Our own errors keep their (secret-free) text; anything else is reduced to its type.
    assert problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${sealed:bad}'}") == [
        f"{REAL}.SecretKey: the 'sealed' resolver failed (KMSError)"
    ]
    assert problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${sealed:crash}'}") == [
        f"{REAL}.SecretKey: the 'sealed' resolver failed (RuntimeError)"
    ]


@pytest.mark.usefixtures("restore_resolvers")
def test_resolver_errors_of_our_own_are_passed_on() -> None:
    def strict(ref: str) -> str:
        raise ConfigError(f"no such entry '{ref}'")

    register_secret_resolver("vault-kv", strict)
    assert problems("{AccessKey: AKIAREAL00000000001, SecretKey: '${vault-kv:db/pw}'}") == [
        f"{REAL}.SecretKey: no such entry 'db/pw'"
    ]


@pytest.mark.usefixtures("restore_resolvers")
def test_resolver_registration_is_checked() -> None:
    with pytest.raises(ValueError, match=r"prefix must match \[a-z\]\[a-z0-9_-\]\*"):
        register_secret_resolver("Vault", str.upper)
    with pytest.raises(ValueError, match="prefix must match"):
        register_secret_resolver("", str.upper)
    with pytest.raises(TypeError, match="secret resolver must be callable"):
        register_secret_resolver("x", "not callable")  # type: ignore[arg-type]


def test_problem_text_never_contains_a_secret(tmp_path: Path) -> None:
    secret = "S3cr3t-value-that-must-not-leak"
    path = tmp_path / "sk"
    path.write_text(secret)
    text = textwrap.dedent(
        f"""\
        Http: {{Address: 'bad'}}
        Log: {{Level: 'x'}}
        Endpoints:
          - CloudAccountName: acct
            Vendor: nope
            Credentials:
              Proxy: {{AccessKey: AKIDPROXY0000000001, SecretKey: '${{{secret}'}}
              Real:
                AccessKey: AKIAREAL00000000001
                SecretKey: '${{file:{path}}}'
                AccessToken: [{secret}]
                ClientToken: {{{secret}: 1}}
                ClientSecret: !!binary {secret}
        """
    )
    with pytest.raises(ConfigError) as info:
        loads(text, "config.yml", env={"SK": secret})
    assert len(info.value.problems) == 7
    for problem in info.value.problems:
        assert secret not in problem
