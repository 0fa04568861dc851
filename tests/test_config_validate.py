"""validate() on configs built in Python (the seed's library use), and the config summary."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from keybroker import signers
from keybroker.config.check import validate
from keybroker.config.loader import load
from keybroker.config.summary import mask_key, render_summary
from keybroker.credentials import Credential
from keybroker.errors import ConfigError
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint, HttpConfig, LogConfig, TlsConfig

CONFIGS = Path(__file__).parent / "data" / "configs"

KNOWN = ", ".join(signers.known_vendors())


def endpoint(name: str = "volc_test", vendor: str = "volcengine", n: int = 1) -> Endpoint:
    return Endpoint(
        cloud_account_name=name,
        vendor=vendor,
        proxy=Credential(f"AKLTPROXY000000000{n}", Secret(f"proxy-secret-made-up-{n}")),
        real=Credential(f"AKLTREAL0000000000{n}", Secret(f"real-secret-{n}")),
    )


def problems(cfg: Config) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    return info.value.problems


def test_seed_example_in_python_is_valid() -> None:
    cfg = Config(
        http=HttpConfig(address=":3888", tls=TlsConfig(enabled=False)),
        log=LogConfig(output="./output/log", level="debug", max_age=14, max_size=100),
        endpoints=[endpoint()],
    )
    validate(cfg)


def test_files_that_load_also_validate() -> None:
    for name in ("keyproxy.yml", "seed_example.yml", "full.yml", "lowercase.yml"):
        validate(load(CONFIGS / name))


def test_same_checks_without_line_numbers() -> None:
    cfg = Config(
        http=HttpConfig(address="3888", max_body_bytes=-1, tls=TlsConfig(enabled=True)),
        log=LogConfig(level="loud"),
        endpoints=[endpoint(vendor="awz"), endpoint(vendor="tencent", n=1)],
    )
    cfg.endpoints[1].upstream = "ftp://example.com"
    assert problems(cfg) == [
        "Http.MaxBodyBytes: must be greater than 0",
        "Http.Address: expected 'host:port' or ':port' with a port 1-65535, got '3888'",
        "Http.Tls.CertFile: required when Http.Tls.Enabled is true",
        "Http.Tls.KeyFile: required when Http.Tls.Enabled is true",
        "Log.Level: expected one of debug, info, warn, warning, error, got 'loud'",
        f"Endpoints[0].Vendor: unknown vendor 'awz' (known: {KNOWN})",
        "Endpoints[1].Upstream: expected an http(s) URL with a host, got 'ftp://example.com'",
        "Endpoints[1].CloudAccountName: duplicate name (also Endpoints[0])",
        "Endpoints[1].Credentials.Proxy.AccessKey: duplicate proxy access key "
        "(also Endpoints[0].Credentials.Proxy)",
    ]


def test_wrong_types_from_python() -> None:
    bad = Endpoint(
        cloud_account_name="",
        vendor="AWS",
        proxy=Credential("", "plain-string-secret"),  # type: ignore[arg-type]
        real="not a credential",  # type: ignore[arg-type]
    )
    cfg = Config(endpoints=[bad])
    cfg.http.upstream_read_timeout = float("nan")
    cfg.security.clock_skew_seconds = True
    cfg.forbidden.forbidden_account_not_found = "yes"  # type: ignore[assignment]
    found = problems(cfg)
    assert found == [
        "Http.UpstreamReadTimeout: must be greater than 0",
        "Forbidden.ForbiddenAccountNotFound: expected a boolean",
        "Security.ClockSkewSeconds: expected an integer",
        "Endpoints[0].CloudAccountName: must not be empty",
        "Endpoints[0].Vendor: vendor codes are lower case: use 'aws'",
        "Endpoints[0].Credentials.Proxy.AccessKey: must not be empty",
        "Endpoints[0].Credentials.Proxy.SecretKey: expected a Secret",
        "Endpoints[0].Credentials.Real: expected a Credential",
    ]
    assert not any("plain-string-secret" in p for p in found)


def test_empty_secret_and_broken_sections() -> None:
    cfg = Config(endpoints=[endpoint()])
    cfg.endpoints[0].real = Credential("AKLTREAL00000000001", Secret(""))
    assert problems(cfg) == ["Endpoints[0].Credentials.Real.SecretKey: must not be empty"]
    cfg = Config(http=None, endpoints="acct")  # type: ignore[arg-type]
    assert problems(cfg) == [
        "Http: expected an HttpConfig",
        "Endpoints: expected a list of Endpoint",
    ]


def test_validate_wants_a_config() -> None:
    with pytest.raises(TypeError, match=r"validate\(\) needs a keybroker.settings.Config"):
        validate({"Http": {}})  # type: ignore[arg-type]


# --- summary ----------------------------------------------------------------------------------


def every_secret(cfg: Config) -> list[str]:
    return [s for ep in cfg.endpoints for cred in (ep.proxy, ep.real) for s in cred.secrets()]


@pytest.mark.parametrize("name", ["keyproxy.yml", "seed_example.yml", "full.yml"])
def test_summary_never_shows_a_secret(name: str) -> None:
    cfg = load(CONFIGS / name)
    text = render_summary(cfg)
    secrets = every_secret(cfg)
    assert secrets
    for secret in secrets:
        assert secret not in text
    for ep in cfg.endpoints:
        assert ep.cloud_account_name in text
        assert ep.proxy.access_key in text
        assert ep.real.access_key not in text
        assert mask_key(ep.real.access_key) in text


def test_summary_of_the_key_proxy_file() -> None:
    text = render_summary(load(CONFIGS / "keyproxy.yml"))
    assert text.splitlines() == [
        "keybroker configuration",
        "  Listen     http on :3888  (TLS off)",
        "  Log        ./output/log  level debug  keep 14 days  rotate at 100 MB",
        "  Audit      off",
        "  Forbidden  unknown account: FORWARDED unverified; bad proxy signature: FORWARDED "
        "unverified",
        "  Limits     headers 16 KiB, body 64 MiB, connect 10s, read 300s, shutdown 30s, "
        "clock skew 900s",
        "  Accounts   1",
        "    NAME  VENDOR  PROXY KEY             REAL KEY      UPSTREAM",
        "    acct  aws     AKIDPROXYKEY0000TEST  AKIA****MPLE  (vendor default)",
    ]


def test_summary_tls_audit_and_upstream(tmp_path: Path) -> None:
    cfg = load(CONFIGS / "full.yml")
    cfg.http.tls = TlsConfig(True, ":8443", "/etc/kb/cert.pem", "/etc/kb/key.pem")
    cfg.endpoints[0].upstream = "https://user:pw@example.com:8443/base?token=abc#frag"
    text = render_summary(cfg)
    assert "  Listen     https on :8443  (TLS on; plain HTTP not served)" in text
    assert "cert /etc/kb/cert.pem" in text and "key  /etc/kb/key.pem" in text
    assert "  Audit      ./audit  keep 30 days  rotate at 10 MB" in text
    assert "  Log        stderr  level warn" in text
    assert "https://example.com:8443/base" in text
    for leak in ("user", "pw@", "token=abc", "frag"):
        assert leak not in text
    assert "body 16 MiB, connect 2.5s, read 60s, shutdown 5s, clock skew 300s" in text


def test_summary_fits_one_screen() -> None:
    cfg = Config(endpoints=[endpoint(f"acct-{i}", n=i) for i in range(50)])
    lines = render_summary(cfg).splitlines()
    assert len(lines) < 40
    assert lines[-1] == "    ... and 30 more"
    assert "  Accounts   50" in lines
    assert render_summary(Config()).splitlines()[-1] == "  Accounts   none"


@pytest.mark.parametrize(
    ("key", "masked"),
    [("AKIAIOSFODNN7EXAMPLE", "AKIA****MPLE"), ("AKLT1234", "AK****34"), ("short", "****")],
)
def test_mask_key(key: str, masked: str) -> None:
    assert mask_key(key) == masked


def test_public_names() -> None:
    import keybroker.config
    from keybroker.config import check, summary

    # The package's ``load`` is the function, so the module is taken from the import system.
    config_load = importlib.import_module("keybroker.config.loader")

    assert sorted(keybroker.config.__all__) == [
        "load",
        "loads",
        "register_secret_resolver",
        "validate",
    ]
    assert sorted(config_load.__all__) == ["MAX_CONFIG_BYTES", "load", "loads"]
    assert sorted(summary.__all__) == [
        "MAX_ACCOUNTS_SHOWN",
        "mask_key",
        "render_banner",
        "render_summary",
    ]
    assert len(check.KEY_PROXY_VENDORS) == 13
