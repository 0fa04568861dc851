"""Proxy credentials that protect nothing are refused by ``keybroker check`` and at start-up:
one equal to (or sharing a key with) a real credential, secrets too short to scrub from the
logs, and weak proxy signing secrets unless ``Security.AllowWeakProxySecrets`` says so."""

from __future__ import annotations

import secrets
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.config.check import validate
from keybroker.config.check_credentials import weak_secret_reason
from keybroker.config.loader import loads
from keybroker.credentials import Credential
from keybroker.errors import ConfigError
from keybroker.logs.redact import SecretRegistry, register_config_secrets
from keybroker.proxy.app import Proxy
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint, SecurityConfig

STRONG = "proxy-" + "k7Qw2mZp9xLr4TnB"
REAL_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _ep(
    name: str = "acct",
    proxy: tuple[str, str] = ("AKIDPROXY0000000001", STRONG),
    real: tuple[str, str] = ("AKIAREAL00000000001", REAL_SK),
) -> Endpoint:
    return Endpoint(
        cloud_account_name=name,
        vendor="aws",
        proxy=Credential(proxy[0], Secret(proxy[1])),
        real=Credential(real[0], Secret(real[1])),
    )


def _problems(*eps: Endpoint, allow_weak: bool = False) -> list[str]:
    cfg = Config(security=SecurityConfig(allow_weak_proxy_secrets=allow_weak), endpoints=[*eps])
    try:
        validate(cfg)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def test_a_strong_distinct_proxy_credential_is_accepted() -> None:
    assert _problems(_ep()) == []


def test_proxy_equal_to_real_is_refused_even_with_the_escape() -> None:
    same = ("AKIAREAL00000000001", REAL_SK)
    for allow in (False, True):
        found = _problems(_ep(proxy=same, real=same), allow_weak=allow)
        assert found == [
            "Endpoints[0].Credentials.Proxy.AccessKey: is a real credential's access key: "
            "make up another one",
            "Endpoints[0].Credentials.Proxy.SecretKey: is a real credential's secret: "
            "make up another one",
        ]
        assert not any(REAL_SK in f for f in found)


def test_sharing_only_the_secret_or_only_the_key_is_refused() -> None:
    assert _problems(_ep(proxy=("AKIDPROXY0000000001", REAL_SK))) == [
        "Endpoints[0].Credentials.Proxy.SecretKey: is a real credential's secret: "
        "make up another one"
    ]
    assert _problems(_ep(proxy=("AKIAREAL00000000001", STRONG))) == [
        "Endpoints[0].Credentials.Proxy.AccessKey: is a real credential's access key: "
        "make up another one"
    ]


def test_another_accounts_real_secret_is_refused_as_a_proxy_secret() -> None:
    other_real = "0therRealSecret/forAccountB+xyz"
    a = _ep("a", proxy=("AKIDPROXYA", other_real))
    b = _ep("b", proxy=("AKIDPROXYB", STRONG + "b"), real=("AKIAREALB", other_real))
    assert _problems(a, b) == [
        "Endpoints[0].Credentials.Proxy.SecretKey: is a real credential's secret: "
        "make up another one"
    ]


def test_additional_proxies_are_checked_too() -> None:
    ep = _ep()
    ep.additional_proxies = [Credential("AKIDPROXYNEXT", Secret("short-1"))]
    found = _problems(ep)
    assert found == [
        "Endpoints[0].Credentials.AdditionalProxies[0].SecretKey: is too short: use at least "
        "16 random characters (or set Security.AllowWeakProxySecrets: true)"
    ]


@pytest.mark.parametrize("value", ["x", "ab", "12345"])
def test_secrets_too_short_to_scrub_are_refused_even_with_the_escape(value: str) -> None:
    for allow in (False, True):
        assert _problems(_ep(proxy=("AKIDPROXY0000000001", value)), allow_weak=allow) == [
            "Endpoints[0].Credentials.Proxy.SecretKey: is shorter than 6 characters: "
            "too short to be kept out of the logs"
        ]
    assert _problems(_ep(real=("AKIAREAL00000000001", value))) == [
        "Endpoints[0].Credentials.Real.SecretKey: is shorter than 6 characters: "
        "too short to be kept out of the logs"
    ]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("proxy-secret", "too short"),
        ("aaaaaaaaaaaaaaaaaaaa", "too little entropy"),
        ("abcabcabcabcabcabcab", "too little entropy"),
        ("0101010101010101", "too little entropy"),
        ("passwordpassword", "too little entropy"),
        ("aaaaabbbbbcccccddd", "too little entropy"),
    ],
)
def test_weak_proxy_secrets_are_refused_unless_allowed(value: str, why: str) -> None:
    [found] = _problems(_ep(proxy=("AKIDPROXY0000000001", value)))
    assert found.startswith("Endpoints[0].Credentials.Proxy.SecretKey: ")
    assert why in found and "Security.AllowWeakProxySecrets" in found
    assert value not in found
    assert _problems(_ep(proxy=("AKIDPROXY0000000001", value)), allow_weak=True) == []


@given(st.text(string.ascii_letters + string.digits + "-_/+", min_size=1, max_size=15))
def test_any_proxy_secret_under_16_characters_is_weak(value: str) -> None:
    assert weak_secret_reason(value) is not None


@given(st.text(string.printable.strip(), min_size=1, max_size=8), st.integers(2, 8))
def test_any_repeated_unit_is_weak(unit: str, times: int) -> None:
    assert weak_secret_reason((unit * times * 16)[: max(16, len(unit) * times)]) is not None


@settings(max_examples=50)
@given(st.integers(12, 48))
def test_generated_random_secrets_are_strong(n: int) -> None:
    assert weak_secret_reason(secrets.token_urlsafe(n)) is None
    assert weak_secret_reason(secrets.token_hex(max(n, 16) // 2 + 8)) is None


@settings(max_examples=60)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40))
def test_every_accepted_secret_is_scrubbed_from_log_lines(value: str) -> None:
    """Whatever secret validation accepts (escape on), the log scrubber removes it."""
    ep = _ep(proxy=("AKIDPROXY0000000001", value))
    if _problems(ep, allow_weak=True):
        return
    registry = SecretRegistry()
    register_config_secrets(Config(endpoints=[ep]), registry)
    assert value not in registry.scrub(f"upstream said: {value}!")


def test_additional_proxy_secrets_are_scrubbed_too() -> None:
    ep = _ep()
    nxt = "next-proxy-" + secrets.token_urlsafe(12)
    ep.additional_proxies = [Credential("AKIDPROXYNEXT", Secret(nxt))]
    assert _problems(ep) == []
    registry = SecretRegistry()
    register_config_secrets(Config(endpoints=[ep]), registry)
    line = f"a={STRONG} b={REAL_SK} c={nxt}"
    assert registry.scrub(line) == "a=*** b=*** c=***"


def test_start_up_validation_refuses_the_same_config() -> None:
    same = ("AKIAREAL00000000001", REAL_SK)
    with pytest.raises(ConfigError) as info:
        Proxy(Config(endpoints=[_ep(proxy=same, real=same)]))
    assert "is a real credential's secret" in str(info.value)
    assert REAL_SK not in str(info.value)


YAML = """\
Security:
  AllowWeakProxySecrets: {allow}
Endpoints:
  - CloudAccountName: acct
    Vendor: aws
    Credentials:
      Proxy: {{AccessKey: AKIDPROXY0000000001, SecretKey: "{proxy}"}}
      Real: {{AccessKey: AKIAREAL00000000001, SecretKey: "{real}"}}
"""


def test_the_escape_is_read_from_the_file() -> None:
    text = YAML.format(allow="true", proxy="proxy-secret", real=REAL_SK)
    assert loads(text, "config.yml").security.allow_weak_proxy_secrets is True
    with pytest.raises(ConfigError) as info:
        loads(YAML.format(allow="false", proxy="proxy-secret", real=REAL_SK), "config.yml")
    assert info.value.problems == [
        "config.yml:7: Endpoints[0].Credentials.Proxy.SecretKey: is too short: use at least "
        "16 random characters (or set Security.AllowWeakProxySecrets: true)"
    ]
    with pytest.raises(ConfigError) as info:
        loads(YAML.format(allow="maybe", proxy=STRONG, real=REAL_SK), "config.yml")
    assert "Security.AllowWeakProxySecrets" in info.value.problems[0]


def test_the_summary_says_when_weak_secrets_are_allowed(tmp_path: Path) -> None:
    cfg = tmp_path / "weak.yml"
    cfg.write_text(YAML.format(allow="true", proxy="proxy-secret", real=REAL_SK))
    r = subprocess.run(
        [sys.executable, "-m", "keybroker", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "weak proxy secrets ALLOWED" in r.stdout and "proxy-secret" not in r.stdout


def test_keybroker_check_refuses_reused_and_weak_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        textwrap.dedent(YAML).format(allow="false", proxy=REAL_SK, real=REAL_SK)
        + "  - CloudAccountName: b\n    Vendor: aws\n    Credentials:\n"
        "      Proxy: {AccessKey: AKIDPROXYB, SecretKey: x}\n"
        "      Real: {AccessKey: AKIAREALB, SecretKey: another-real-secret}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "keybroker", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "Endpoints[0].Credentials.Proxy.SecretKey: is a real credential's secret" in r.stderr
    assert "Endpoints[1].Credentials.Proxy.SecretKey: is shorter than 6" in r.stderr
    assert REAL_SK not in r.stderr + r.stdout and "Traceback" not in r.stderr
