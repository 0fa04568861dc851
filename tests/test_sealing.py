"""Sealed values: the kb1 format (known answers), its bindings, and opening them in a config.

Every KMS here is real: the cluster KMS, a local KEK with file storage, and AWS KMS on moto.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.config.loader import loads
from keybroker.errors import ConfigError
from keybroker.kms import ClusterKMS, ExternalKMS, from_uris
from keybroker.sealing import (
    CANNOT_OPEN,
    TOKEN_PREFIX,
    Sealer,
    dek_id_for,
    normalise_field,
    sealed_reference,
)
from keybroker.secret import Secret
from tests import logscan

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "sealing" / "kb1.json").read_text(encoding="utf-8")
)
MASTER = bytes.fromhex(VECTORS["kms"]["cluster_master"])
SALT = bytes.fromhex(VECTORS["kms"]["cluster_salt"])
REAL = "Credentials.Real.SecretKey"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def cluster_uri(master: bytes = MASTER, salt: bytes = SALT) -> str:
    return f"kms://cluster-kms?key={b64url(master)}&salt={b64url(salt)}"


@pytest.fixture(scope="module")
def sealer() -> Iterator[Sealer]:
    with Sealer(ClusterKMS(MASTER, SALT)) as s:
        yield s


def flip(token: str, i: int) -> str:
    """``token`` with character ``i`` (after the prefix) replaced by another base64url one."""
    pos = len(TOKEN_PREFIX) + i
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    new = alphabet[(alphabet.index(token[pos]) + 1) % len(alphabet)]
    return token[:pos] + new + token[pos + 1 :]


# --- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
async def test_known_answer(v: dict[str, str]) -> None:
    kms = ClusterKMS(MASTER, SALT)
    assert (await kms.get_dek(v["dek_id"], 32)).hex() == v["dek"]
    assert dek_id_for(v["account"]) == v["dek_id"]
    nonce = bytes.fromhex(v["nonce"])
    with Sealer(kms, randbytes=lambda n: nonce[:n]) as s:
        assert s.seal(v["value"], account=v["account"], field=v["field"]) == v["token"]
        assert s.open(v["token"], account=v["account"], field=v["field"]) == v["value"]


def test_vectors_match_their_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "seal_vectors", Path(__file__).parent / "vectors" / "sealing" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == VECTORS


# --- round trips and bindings ----------------------------------------------------------------


def test_round_trip_uses_a_fresh_nonce(sealer: Sealer) -> None:
    a = sealer.seal("s3cr3t", account="acct", field="Real.SecretKey")
    b = sealer.seal(Secret("s3cr3t"), account="acct", field=REAL)
    assert a != b and a.startswith(TOKEN_PREFIX)
    assert sealer.open(a, account="acct", field=REAL) == "s3cr3t"
    assert sealer.open(b, account="acct", field=REAL) == "s3cr3t"
    assert "s3cr3t" not in a and sealed_reference(a) == "${sealed:" + a + "}"


@pytest.mark.parametrize(
    ("account", "field"),
    [
        ("other", REAL),  # moved to another account
        ("acct", "Credentials.Proxy.SecretKey"),  # to another role
        ("acct", "Credentials.Real.AccessToken"),  # to another key
        ("acct", "Credentials.AdditionalProxies[0].SecretKey"),
        ("Acct", REAL),  # account names are case-sensitive
    ],
)
def test_a_value_opens_only_where_it_was_sealed(sealer: Sealer, account: str, field: str) -> None:
    token = sealer.seal("bound-value", account="acct", field=REAL)
    with pytest.raises(ConfigError) as info:
        sealer.open(token, account=account, field=field)
    assert str(info.value) == CANNOT_OPEN


def test_another_master_secret_cannot_open() -> None:
    with Sealer(ClusterKMS(MASTER, SALT)) as a, Sealer(ClusterKMS(os.urandom(32), SALT)) as b:
        token = a.seal("v", account="acct", field=REAL)
        with pytest.raises(ConfigError, match="cannot be opened"):
            b.open(token, account="acct", field=REAL)


def test_other_account_token_never_asks_the_kms_for_its_dek(tmp_path: Path) -> None:
    """A token naming another account's DEK is refused before the KMS is asked (an external
    KMS would create and store a DEK for any id it is asked for)."""
    storage = tmp_path / "store"
    with external_sealer(tmp_path) as s:
        token = s.seal("v", account="acct", field=REAL)
    with external_sealer(tmp_path) as s, pytest.raises(ConfigError, match="cannot be opened"):
        s.open(token, account="intruder", field=REAL)
    assert [p.name for p in storage.iterdir() if not p.name.startswith(".")] == ["seal%2Facct"]


#: the fixed messages of a token changed by one character: none of them is built from the value
TAMPERED_MESSAGES = frozenset(
    {
        CANNOT_OPEN,
        "sealed value is not valid URL-safe base64 after 'kb1.'",
        "sealed value is truncated",
        "sealed value is malformed (bad key id length)",
        "sealed value is malformed (key id is not UTF-8)",
    }
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_changed_character_is_refused(sealer: Sealer, data: st.DataObject) -> None:
    value = data.draw(st.text(min_size=1, max_size=40), label="value")
    token = sealer.seal(value, account="acct", field=REAL)
    i = data.draw(st.integers(0, len(token) - len(TOKEN_PREFIX) - 1), label="index")
    with pytest.raises(ConfigError) as info:
        sealer.open(flip(token, i), account="acct", field=REAL)
    message = str(info.value)
    # a short value may happen to be part of one of the fixed messages (the "1" of "kb1.")
    assert value not in message or message in TAMPERED_MESSAGES


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: TOKEN_PREFIX + b64url(b).rstrip("=")),
        st.text(max_size=200).map(lambda t: TOKEN_PREFIX + t),
    )
)
def test_opening_garbage_is_always_a_config_error(sealer: Sealer, token: str) -> None:
    with pytest.raises(ConfigError):
        sealer.open(token, account="acct", field=REAL)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("v1:AAAA", "not in a known format (expected kb1.<base64url>)"),
        ("kb2.AAAA", "not in a known format"),
        ("kb1.", "not valid URL-safe base64"),
        ("kb1.AA==", "not valid URL-safe base64"),
        ("kb1.A+/A", "not valid URL-safe base64"),
        ("kb1.AB", "not valid URL-safe base64"),  # non-zero unused bits: not canonical
        ("kb1.AA", "truncated"),
        ("kb1." + b64url(b"\x00\x00" + bytes(40)).rstrip("="), "bad key id length"),
        ("kb1." + b64url(b"\x00\x04seal" + bytes(20)).rstrip("="), "truncated"),
        ("kb1." + b64url(b"\x00\x02\xff\xfe" + bytes(40)).rstrip("="), "key id is not UTF-8"),
        ("kb1." + "A" * 200_000, "too long"),
    ],
)
def test_malformed_tokens_say_what_is_wrong(sealer: Sealer, token: str, message: str) -> None:
    with pytest.raises(ConfigError, match="sealed value") as info:
        sealer.open(token, account="acct", field=REAL)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Real.SecretKey", REAL),
        ("credentials.real.secretkey", REAL),
        ("Credentials.Proxy.AccessToken", "Credentials.Proxy.AccessToken"),
        ("additionalproxies[12].clientsecret", "Credentials.AdditionalProxies[12].ClientSecret"),
        (" Real.AccessKey ", "Credentials.Real.AccessKey"),
    ],
)
def test_field_names_are_normalised(given: str, canonical: str) -> None:
    assert normalise_field(given) == canonical


@pytest.mark.parametrize(
    "field",
    [
        "Real",
        "SecretKey",
        "Real.Password",
        "Other.SecretKey",
        "AdditionalProxies.SecretKey",
        "AdditionalProxies[01].SecretKey",
        "Real.SecretKey.x",
        "",
    ],
)
def test_bad_field_names_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=r"field must be Proxy\|Real\|AdditionalProxies\[N\]"):
        normalise_field(field)


def test_seal_argument_guards(sealer: Sealer) -> None:
    with pytest.raises(ValueError, match=r"1\.\.65536 bytes"):
        sealer.seal("", account="acct", field=REAL)
    with pytest.raises(ValueError, match=r"1\.\.65536 bytes"):
        sealer.seal("x" * 65537, account="acct", field=REAL)
    with pytest.raises(ValueError, match="valid unicode") as info:
        sealer.seal("xq\ud800zw", account="acct", field=REAL)
    assert "\\ud800" not in str(info.value) and "xq" not in str(info.value)
    with pytest.raises(ValueError, match="account name must be"):
        sealer.seal("v", account="", field=REAL)
    with pytest.raises(ValueError, match="account name must be"):
        sealer.seal("v", account="a" * 300, field=REAL)
    assert "Secret" not in repr(sealer) or "***" in repr(sealer)


def test_a_closed_sealer_refuses_work() -> None:
    s = Sealer(ClusterKMS(MASTER, SALT))
    s.seal("v", account="acct", field=REAL)
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.seal("v", account="acct", field=REAL)


# --- external KMS: local KEK + file storage, and AWS KMS on moto ------------------------------


def external_sealer(tmp: Path) -> Sealer:
    kek = tmp / "kek"
    if not kek.exists():
        kek.write_bytes(os.urandom(32))
        kek.chmod(0o600)
    store = urllib.parse.quote(str(tmp / "store"))
    return Sealer.from_uris(f"kms://local?keyFile={kek}", f"storage://file?path={store}")


def test_external_kms_stores_one_dek_per_account_and_reopens(tmp_path: Path) -> None:
    with external_sealer(tmp_path) as s:
        assert isinstance(s._kms, ExternalKMS)
        a = s.seal("first", account="acct", field=REAL)
        b = s.seal("second", account="acct", field="Proxy.SecretKey")
        c = s.seal("third", account="other", field=REAL)
    with external_sealer(tmp_path) as s:  # a new process would do just this
        assert s.open(a, account="acct", field=REAL) == "first"
        assert s.open(b, account="acct", field="Credentials.Proxy.SecretKey") == "second"
        assert s.open(c, account="other", field=REAL) == "third"
    names = sorted(p.name for p in (tmp_path / "store").iterdir() if not p.name.startswith("."))
    assert names == ["seal%2Facct", "seal%2Fother"]


def test_a_failing_kms_is_named_not_hidden(tmp_path: Path) -> None:
    with external_sealer(tmp_path) as s:
        token = s.seal("v", account="acct", field=REAL)
    blob = tmp_path / "store" / "seal%2Facct"
    blob.write_bytes(blob.read_bytes()[:-1] + bytes([blob.read_bytes()[-1] ^ 1]))
    with external_sealer(tmp_path) as s, pytest.raises(ConfigError) as info:
        s.open(token, account="acct", field=REAL)
    assert str(info.value).startswith("sealed value cannot be opened: the KMS failed (")
    assert "seal/acct" in str(info.value)


@pytest.fixture(scope="module")
def aws_key(moto_url: str) -> str:
    kms = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name="eu-central-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return str(kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"])


def test_aws_kms_on_moto(moto_url: str, aws_key: str, tmp_path: Path) -> None:
    q = urllib.parse.quote
    kms = (
        f"kms://aws?region=eu-central-1&accessKeyID=test&accessKey=test&keyName={aws_key}"
        f"&endpoint={q(moto_url, safe='')}"
    )
    storage = f"storage://file?path={q(str(tmp_path))}"
    with Sealer.from_uris(kms, storage) as s:
        token = s.seal("aws-sealed", account="acct", field=REAL)
    with Sealer(from_uris(kms_uri=kms, storage_uri=storage)) as s:
        assert s.open(token, account="acct", field=REAL) == "aws-sealed"


# --- in a config -----------------------------------------------------------------------------


def config(seal: str, endpoints: list[tuple[str, str, str]]) -> str:
    """A config with a ``Seal`` section and endpoints of (account, proxy secret, real secret)."""
    lines = [seal, "Endpoints:"]
    for i, (name, proxy_sk, real_sk) in enumerate(endpoints):
        lines += [
            f"  - CloudAccountName: {json.dumps(name)}",
            "    Vendor: aws",
            "    Credentials:",
            "      Proxy:",
            f"        AccessKey: AKIDPROXY000000000{i}",
            f"        SecretKey: {json.dumps(proxy_sk)}",
            "      Real:",
            f"        AccessKey: AKIAREAL0000000000{i}",
            f"        SecretKey: {json.dumps(real_sk)}",
        ]
    return "\n".join(lines) + "\n"


SEAL = f'Seal:\n  KMS: "{cluster_uri()}"'


def ref(sealer: Sealer, value: str, account: str, field: str = REAL) -> str:
    token = sealer.seal(value, account=account, field=field)
    logscan.register(value, token)
    return sealed_reference(token)


def load_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, "config.yml", env={})
    return info.value.problems


def test_config_opens_sealed_values_by_account_not_position(sealer: Sealer) -> None:
    a_real, b_real, b_proxy = "real-a-" + "x" * 20, "real-b-" + "y" * 20, "proxy-b-secret-made-up"
    eps = [
        ("a", "proxy-a-secret-made-up", ref(sealer, a_real, "a")),
        ("b", ref(sealer, b_proxy, "b", "Proxy.SecretKey"), ref(sealer, b_real, "b")),
    ]
    for order in (eps, eps[::-1]):  # reordering the file breaks nothing
        cfg = loads(config(SEAL, order), "config.yml", env={})
        by_name = {e.cloud_account_name: e for e in cfg.endpoints}
        assert by_name["a"].real.secret_key == Secret(a_real)
        assert by_name["b"].real.secret_key.reveal() == b_real
        assert by_name["b"].proxy.secret_key.reveal() == b_proxy


def test_a_tampered_value_is_refused_with_its_line_and_field(sealer: Sealer) -> None:
    good = sealer.seal("real-secret-tamper", account="acct", field=REAL)
    bad = flip(good, 20)
    found = load_problems(config(SEAL, [("acct", "proxy-secret-made-up-p", sealed_reference(bad))]))
    assert found == [f"config.yml:12: Endpoints[0].{REAL}: {CANNOT_OPEN}"]
    assert bad not in found[0] and good not in found[0]


def test_moved_values_are_refused(sealer: Sealer) -> None:
    real_of_a = ref(sealer, "secret-of-a", "a")
    moved_account = config(
        SEAL,
        [
            ("a", "proxy-secret-made-up-a", "plain-real-a"),
            ("b", "proxy-secret-made-up-b", real_of_a),
        ],
    )
    assert load_problems(moved_account) == [f"config.yml:21: Endpoints[1].{REAL}: {CANNOT_OPEN}"]
    moved_field = config(SEAL, [("a", real_of_a, "plain-real-a")])
    assert load_problems(moved_field) == [
        f"config.yml:9: Endpoints[0].Credentials.Proxy.SecretKey: {CANNOT_OPEN}"
    ]


def test_another_kms_cannot_open_the_config(sealer: Sealer) -> None:
    other = f'Seal:\n  KMS: "{cluster_uri(master=os.urandom(32))}"'
    found = load_problems(
        config(other, [("acct", "proxy-secret-made-up-p", ref(sealer, "s-other-kms", "acct"))])
    )
    assert found == [f"config.yml:12: Endpoints[0].{REAL}: {CANNOT_OPEN}"]


def test_the_master_secret_may_live_in_a_file(tmp_path: Path, sealer: Sealer) -> None:
    key = tmp_path / "master.key"
    key.write_text(b64url(MASTER) + "\n")
    key.chmod(0o600)
    seal = f'Seal:\n  KMS: "kms://cluster-kms?key=file:{key}&salt={b64url(SALT)}"'
    cfg = loads(
        config(seal, [("acct", "proxy-secret-made-up-p", ref(sealer, "from-file", "acct"))]), env={}
    )
    assert cfg.endpoints[0].real.secret_key.reveal() == "from-file"


def test_external_kms_in_a_config(tmp_path: Path) -> None:
    with external_sealer(tmp_path) as s:
        value = ref(s, "external-secret", "acct")
    store = urllib.parse.quote(str(tmp_path / "store"))
    seal = f"Seal:\n  KMS: kms://local?keyFile={tmp_path / 'kek'}\n  Storage: storage://file?path={store}"
    cfg = loads(config(seal, [("acct", "proxy-secret-made-up-p", value)]), env={})
    assert cfg.endpoints[0].real.secret_key.reveal() == "external-secret"


def test_without_a_seal_section_sealed_values_need_a_kms(sealer: Sealer) -> None:
    found = load_problems(
        config(
            "Log: {Level: info}", [("acct", "proxy-secret-made-up-p", ref(sealer, "nokms", "acct"))]
        )
    )
    assert found == [
        f"config.yml:11: Endpoints[0].{REAL}: sealed values need a KMS (not configured)"
    ]


@pytest.mark.parametrize(
    ("seal", "problem"),
    [
        ("Seal: {}", "config.yml:1: Seal.KMS: required field is missing (a kms:// URI)"),
        ("Seal: {Storage: 'storage://no-store'}", "Seal.KMS: required field is missing"),
        ("Seal: [kms://cluster-kms]", "config.yml:1: Seal: expected a mapping, got a list"),
        (
            "Seal: {KMS: 'http://x'}",
            "config.yml:1: Seal.KMS: URI scheme must be kms:// or storage://",
        ),
        (
            "Seal: {KMS: 'kms://cluster-kms?key=AAAA'}",
            "Seal.KMS: kms://cluster-kms: missing parameter(s): salt",
        ),
        (
            "Seal: {KMS: 'kms://local?keyFile=/nonexistent/kek', Storage: 'storage://memory'}",
            "Seal.KMS: kms://local: cannot read keyFile /nonexistent/kek",
        ),
        (
            "Seal: {KMS: 'kms://local?keyFile=/x'}",
            "Seal.KMS: kms://local stores wrapped DEKs: it needs a storage URI",
        ),
        (f"Seal: {{KMS: '{cluster_uri()}', Vault: x}}", "config.yml:1: Seal.Vault: unknown field"),
    ],
)
def test_a_broken_seal_section_is_named(sealer: Sealer, seal: str, problem: str) -> None:
    found = load_problems(
        config(seal, [("acct", "proxy-secret-made-up-p", ref(sealer, "broken-seal", "acct"))])
    )
    assert problem in found[0], found
    if len(found) > 1:  # the sealed value says why it cannot be opened, without its text
        cause = "sealed value cannot be opened: the Seal section is invalid"
        assert found[1:] == [f"config.yml:11: Endpoints[0].{REAL}: {cause}"]


def test_a_seal_section_without_endpoints_is_still_checked() -> None:
    assert load_problems("Seal:\n  Storage: x\n") == [
        "config.yml:2: Seal.KMS: required field is missing (a kms:// URI)"
    ]
    assert load_problems("Seal: {KMS: 'kms://cluster-kms?key=AAAA'}\n") == [
        "config.yml:1: Seal.KMS: kms://cluster-kms: missing parameter(s): salt"
    ]


def test_loading_leaves_no_kms_thread_behind(sealer: Sealer) -> None:
    text = config(SEAL, [("acct", "proxy-secret-made-up-p", ref(sealer, "threads", "acct"))])
    before = {t.ident for t in threading.enumerate() if t.name == "keybroker-kms"}
    for _ in range(5):  # as repeated reloads would
        loads(text, env={})
    after = {t.ident for t in threading.enumerate() if t.name == "keybroker-kms"}
    assert after <= before


def test_the_loaded_config_never_shows_the_value(sealer: Sealer) -> None:
    cfg = loads(
        config(
            SEAL, [("acct", "proxy-secret-made-up-p", ref(sealer, "never-shown-value", "acct"))]
        ),
        env={},
    )
    assert "never-shown-value" not in repr(cfg) and "never-shown-value" not in str(cfg)
