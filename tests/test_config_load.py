"""Reading key-proxy's config.yml: accepted files, and the exact message for each broken one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from keybroker import signers
from keybroker.config.loader import load, loads
from keybroker.errors import ConfigError
from keybroker.secret import Secret
from keybroker.settings import Config, HttpConfig

CONFIGS = Path(__file__).parent / "data" / "configs"

GOOD_ENDPOINT = """\
Endpoints:
  - CloudAccountName: acct
    Vendor: aws
    Credentials:
      Proxy: {AccessKey: AKIDPROXY0000000001, SecretKey: proxy-secret-made-up-1}
      Real: {AccessKey: AKIAREAL00000000001, SecretKey: real-secret-goes-here}
"""

KNOWN = ", ".join(signers.known_vendors())


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text), "config.yml", **kwargs)  # type: ignore[arg-type]
    return info.value.problems


# --- files that must load ---------------------------------------------------------------------


def test_key_proxy_block_from_the_spec_loads_unchanged() -> None:
    cfg = load(CONFIGS / "keyproxy.yml")
    assert cfg.http.address == ":3888"
    assert cfg.http.tls.enabled is False
    assert (cfg.http.tls.address, cfg.http.tls.cert_file) == (":443", "./ssl.crt")
    assert cfg.http.tls.key_file == "./ssl.key"
    assert (cfg.log.output, cfg.log.level, cfg.log.max_age, cfg.log.max_size) == (
        "./output/log",
        "debug",
        14,
        100,
    )
    # Explicit false is kept (only an absent flag defaults to true).
    assert cfg.forbidden.forbidden_account_not_found is False
    assert cfg.forbidden.forbidden_proxy_credential_err is False
    [ep] = cfg.endpoints
    assert (ep.cloud_account_name, ep.vendor, ep.upstream) == ("acct", "aws", None)
    assert ep.proxy.access_key == "AKIDPROXYKEY0000TEST"
    assert ep.proxy.secret_key.reveal() == "pr0xy/Secret+Made+Up+By+The+Customer1"
    assert ep.real.access_key == "AKIAIOSFODNN7EXAMPLE"
    assert ep.real.secret_key.reveal() == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert ep.real.access_token is None


def test_seed_example_values_load() -> None:
    cfg = load(CONFIGS / "seed_example.yml")
    [ep] = cfg.endpoints
    assert (ep.cloud_account_name, ep.vendor) == ("volc_test", "volcengine")
    assert ep.proxy.access_key == "<proxy access key>"
    assert ep.proxy.secret_key.reveal() == "<proxy secret key>"
    assert ep.real.access_key == "<real access key>"
    assert ep.real.secret_key.reveal() == "<real secret key>"
    assert cfg.http.tls.address == ":443"  # absent: key-proxy's sample value
    assert cfg.log.level == "debug"


def test_every_field_and_our_additions() -> None:
    cfg = load(CONFIGS / "full.yml")
    http = cfg.http
    assert (http.address, http.tls.address) == ("127.0.0.1:3888", "[::1]:8443")
    assert (http.max_header_bytes, http.max_body_bytes) == (32768, 16 * 1024 * 1024)
    assert (http.upstream_connect_timeout, http.upstream_read_timeout) == (2.5, 60.0)
    assert http.shutdown_timeout == 5.0
    # key-proxy's rules: <= 0 means the default; levels are case-insensitive.
    assert (cfg.log.output, cfg.log.level, cfg.log.max_age, cfg.log.max_size) == (
        "-",
        "warn",
        14,
        100,
    )
    assert (cfg.audit.output, cfg.audit.enabled, cfg.audit.max_age) == ("./audit", True, 30)
    assert cfg.forbidden.forbidden_account_not_found is True
    assert cfg.forbidden.forbidden_proxy_credential_err is True  # absent -> secure default
    assert cfg.security.clock_skew_seconds == 300
    s3, volc = cfg.endpoints
    assert s3.upstream == "http://127.0.0.1:5000"
    # A plain scalar keeps its source text: 0123... is not read as an octal number.
    assert s3.proxy.secret_key.reveal() == "01234567012345671"
    assert isinstance(s3.real.access_token, Secret)
    assert s3.real.access_token.reveal() == "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
    assert volc.proxy.secret_key.reveal() == "${not-a-reference}"
    assert volc.real.secret_key.reveal() == "volc real secret"


def test_keys_match_case_insensitively() -> None:
    cfg = load(CONFIGS / "lowercase.yml")
    [ep] = cfg.endpoints
    assert (ep.cloud_account_name, ep.vendor, cfg.log.level) == ("acct", "aws", "info")
    assert ep.proxy.secret_key.reveal() == "lower-proxy-secret"
    assert ep.real.access_key == "AKIAREALLOWER0000001"
    assert cfg.forbidden.forbidden_account_not_found is False
    assert cfg.forbidden.forbidden_proxy_credential_err is True


def test_absent_sections_take_defaults() -> None:
    cfg = loads(GOOD_ENDPOINT)
    assert cfg.http == HttpConfig()
    assert cfg.forbidden.forbidden_account_not_found is True
    assert cfg.forbidden.forbidden_proxy_credential_err is True
    assert loads("Http: {Address: ':8080'}\nEndpoints:\n").endpoints == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("y", True), ("Yes", True), ("ON", True), ("'true'", True), ("n", False), ("Off", False)],
)
def test_booleans_as_yaml_1_1_spells_them(text: str, expected: bool) -> None:
    cfg = loads(f"Forbidden: {{ForbiddenAccountNotFound: {text}}}")
    assert cfg.forbidden.forbidden_account_not_found is expected


def test_merge_keys_share_a_credential() -> None:
    text = """\
    Endpoints:
      - CloudAccountName: a
        Vendor: aws
        Credentials:
          Proxy: &proxy {AccessKey: AKIDPROXY0000000001, SecretKey: proxy-secret-made-up-1}
          Real: &real {AccessKey: AKIAREAL00000000001, SecretKey: real-secret-goes-here}
      - CloudAccountName: b
        Vendor: aws
        Credentials:
          Proxy: {<<: *proxy, AccessKey: AKIDPROXY0000000002}
          Real: *real
    """
    a, b = loads(textwrap.dedent(text)).endpoints
    assert b.proxy.access_key == "AKIDPROXY0000000002"
    assert b.proxy.secret_key == a.proxy.secret_key
    assert b.real == a.real


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_ENDPOINT.encode())
    assert load(path).endpoints[0].cloud_account_name == "acct"


# --- broken files: every problem, with its line -----------------------------------------------


def test_broken_file_reports_every_problem_with_its_line() -> None:
    path = CONFIGS / "broken.yml"
    with pytest.raises(ConfigError) as info:
        load(path)
    src = str(path)
    assert info.value.problems == [
        f"{src}:3: Http.Adress: unknown field (did you mean Address?)",
        f"{src}:5: Http.Tls.Enabled: expected a boolean, got 'yes please'",
        f"{src}:6: Http.MaxBodyBytes: must be greater than 0",
        f"{src}:8: Log.Level: expected one of debug, info, warn, warning, error, got 'verbose'",
        f"{src}:10: Forbidden.ForbiddenAccountNotFound: expected a boolean, got '1'",
        f"{src}:13: Endpoints[0].Vendor: unknown vendor 'awz' (known: {KNOWN})",
        f"{src}:15: Endpoints[0].Credentials.Proxy.SecretKey: must not be empty",
        f"{src}:16: Endpoints[0].Credentials.Real.SecretKey: required field is missing",
        f"{src}:17: Endpoints[1].CloudAccountName: duplicate name (also Endpoints[0])",
        f"{src}:19: Endpoints[1].Upstream: expected an http(s) URL with a host, got "
        "'ftp://example.com'",
        f"{src}:21: Endpoints[1].Credentials.Proxy.AccessKey: duplicate proxy access key "
        "(also Endpoints[0].Credentials.Proxy)",
    ]
    assert str(info.value) == "; ".join(info.value.problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Http: {Address: 3888}",
            "config.yml:1: Http.Address: expected 'host:port' or ':port' with a port 1-65535, "
            "got '3888'",
        ),
        (
            "Http:\n  Address: ':70000'",
            "config.yml:2: Http.Address: expected 'host:port' or ':port' with a port 1-65535, "
            "got ':70000'",
        ),
        (
            "Http:\n  Tls:\n    Address: 'a b:443'",
            "config.yml:3: Http.Tls.Address: expected 'host:port' or ':port' with a port "
            "1-65535, got 'a b:443'",
        ),
        ("Http: [1, 2]", "config.yml:1: Http: expected a mapping, got a list"),
        ("Http:\n  Tls: yes", "config.yml:2: Http.Tls: expected a mapping, got a boolean"),
        ("Htp: {}", "config.yml:1: Htp: unknown field (did you mean Http?)"),
        (
            "Zzz: 1",
            "config.yml:1: Zzz: unknown field (known: Http, Log, Audit, Forbidden, Security, "
            "Seal, KeyService, Endpoints)",
        ),
        (
            "Http:\n  Address: ':1'\n  address: ':2'",
            "config.yml:3: Http.Address: duplicate key (first at line 2)",
        ),
        ("Log: {MaxAge: 1.5}", "config.yml:1: Log.MaxAge: expected an integer, got '1.5'"),
        ("Log: {MaxAge: true}", "config.yml:1: Log.MaxAge: expected an integer, got 'true'"),
        (
            "Http: {UpstreamReadTimeout: .inf}",
            "config.yml:1: Http.UpstreamReadTimeout: expected a number, got '.inf'",
        ),
        (
            "Http: {ShutdownTimeout: 0}",
            "config.yml:1: Http.ShutdownTimeout: must be greater than 0",
        ),
        (
            "Security:\n  ClockSkewSeconds: -5",
            "config.yml:2: Security.ClockSkewSeconds: must be greater than 0",
        ),
        ("Endpoints: {a: 1}", "config.yml:1: Endpoints: expected a list, got a mapping"),
        (
            "Endpoints:\n  - 42",
            "config.yml:2: Endpoints[0]: expected a mapping, got a number",
        ),
        (
            "Endpoints:\n  -",
            "config.yml:2: Endpoints[0]: empty entry (expected CloudAccountName, Vendor, "
            "Credentials)",
        ),
        ("Http: !custom {}", "config.yml:1: Http: expected a mapping, got a value tagged !custom"),
        (
            "Log: {Output: !!binary aGVsbG8=}",
            "config.yml:1: Log.Output: expected a string, got a value tagged !!binary",
        ),
        ("Http: {Address: !!python/name:os.system ''}", None),
    ],
)
def test_one_problem(text: str, expected: str | None) -> None:
    found = problems(text)
    if expected is None:  # a dangerous tag: refused, never constructed
        assert found == [
            "config.yml:1: Http.Address: expected a string, got a value tagged "
            "!!python/name:os.system"
        ]
    else:
        assert found == [expected]


def test_missing_required_fields_point_at_the_entry() -> None:
    text = """\
    Endpoints:
      - Upstream: https://example.com
      - CloudAccountName: b
        Vendor: aws
        Credentials:
          Proxy: {SecretKey: x}
          Real:
    """
    assert problems(text) == [
        "config.yml:2: Endpoints[0].CloudAccountName: required field is missing",
        "config.yml:2: Endpoints[0].Vendor: required field is missing",
        "config.yml:2: Endpoints[0].Credentials: required field is missing",
        "config.yml:6: Endpoints[1].Credentials.Proxy.AccessKey: required field is missing",
        "config.yml:7: Endpoints[1].Credentials.Real.AccessKey: required field is missing",
        "config.yml:7: Endpoints[1].Credentials.Real.SecretKey: required field is missing",
    ]


def test_empty_required_values() -> None:
    text = """\
    Endpoints:
      - CloudAccountName: ""
        Vendor:
        Credentials:
          Proxy: {AccessKey: "", SecretKey: ~}
          Real: {AccessKey: AKIAREAL00000000001, SecretKey: x}
    """
    assert problems(text) == [
        "config.yml:2: Endpoints[0].CloudAccountName: must not be empty",
        "config.yml:3: Endpoints[0].Vendor: must not be empty",
        "config.yml:5: Endpoints[0].Credentials.Proxy.AccessKey: must not be empty",
        "config.yml:5: Endpoints[0].Credentials.Proxy.SecretKey: must not be empty",
    ]


def test_misplaced_secrets_are_not_echoed() -> None:
    text = """\
    Endpoints:
      - CloudAccountName: acct
        Vendor: aws
        Credentials:
          Proxy: wJalrXUtnFEMI/K7MDENG+proxy
          Real:
            AccessKey: AKIAREAL00000000001
            SecretKey: x
            wJalrXUtnFEMI/K7MDENG/real: 1
            Secretkye: y
    """
    found = problems(text)
    assert found == [
        "config.yml:5: Endpoints[0].Credentials.Proxy: expected a mapping, got a string",
        "config.yml:9: Endpoints[0].Credentials.Real: unknown field (name not shown; known: "
        "AccessKey, SecretKey, AccessToken, ClientToken, ClientSecret, ExpiresAt)",
        "config.yml:10: Endpoints[0].Credentials.Real.Secretkye: unknown field "
        "(did you mean SecretKey?)",
    ]
    assert not any("wJalr" in p for p in found)


def test_tls_needs_readable_cert_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "ssl.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    text = f"""\
    Http:
      Tls:
        Enabled: true
        CertFile: {cert}
    """
    assert problems(text) == [
        "config.yml:3: Http.Tls.KeyFile: required when Http.Tls.Enabled is true",
    ]
    missing = tmp_path / "nope.key"
    text += f"    KeyFile: {missing}\n"
    assert problems(text) == [
        f"config.yml:5: Http.Tls.KeyFile: cannot read '{missing}': No such file or directory",
    ]
    missing.write_text("-----BEGIN PRIVATE KEY-----\n")
    tls = loads(textwrap.dedent(text)).http.tls
    assert (tls.enabled, tls.cert_file, tls.key_file) == (True, str(cert), str(missing))


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("https://user:pw@example.com", "must not contain user info (user:password@)"),
        ("http://", "expected an http(s) URL with a host, got 'http://'"),
        ("example.com", "expected an http(s) URL with a host, got 'example.com'"),
        (
            "http://example.com:99999",
            "expected an http(s) URL with a host, got 'http://example.com:99999'",
        ),
    ],
)
def test_upstream_must_be_an_http_url(upstream: str, expected: str) -> None:
    text = GOOD_ENDPOINT + f"    Upstream: '{upstream}'\n"
    assert problems(text) == [f"config.yml:7: Endpoints[0].Upstream: {expected}"]


def test_vendor_codes_are_case_insensitive_in_files() -> None:
    assert loads(GOOD_ENDPOINT.replace("aws", " AWS")).endpoints[0].vendor == "aws"


# --- unsafe or malformed input: ConfigError, never a traceback --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "config.yml: the file is empty (expected Http, Log, Endpoints, ...)"),
        (
            "# only a comment\n",
            "config.yml: the file is empty (expected Http, Log, Endpoints, ...)",
        ),
        ("- Http", "config.yml:1: expected a mapping of sections, got a list"),
        ("just text", "config.yml:1: expected a mapping of sections, got a string"),
        (
            "Http:\n  Address: [\n",
            "config.yml:3: invalid YAML: while parsing a flow node: expected the node content, "
            "but found '<stream end>'",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "config.yml:2: invalid YAML: expected a single document in the "
            "stream: but found another document",
        ),
        ("Http: *nope", "config.yml:1: invalid YAML: found undefined alias 'nope'"),
        ("Http:\n  Address: \x07", "config.yml:2: character U+0007 is not allowed"),
        ("[" * 50 + "]" * 50, "config.yml:1: nested deeper than 32 levels"),
    ],
)
def test_malformed_yaml(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_yaml_errors_do_not_quote_the_source() -> None:
    # PyYAML's own message shows the offending line; ours must not (it may hold a secret).
    text = 'Endpoints:\n  - Credentials: {Real: {SecretKey: "hunter2-secret" : x}}\n'
    [found] = problems(text)
    assert found.startswith("config.yml:2: invalid YAML: ")
    assert "hunter2" not in found


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b"Http:\n  Address: ':3888'\nLog: {Output: '\xff\xfe'}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [f"{path}:3: not UTF-8 text"]


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yml")
    assert info.value.problems == [
        f"{tmp_path / 'absent.yml'}: cannot read: No such file or directory"
    ]
    big = tmp_path / "big.yml"
    big.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError) as info:
        load(big)
    assert info.value.problems == [f"{big}: larger than 1048576 bytes"]


def test_alias_bomb_is_cheap() -> None:
    # "Billion laughs": aliases are never expanded into values outside the schema.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 20)]
    lines.append("Endpoints: *a19")
    found = problems("\n".join(lines))
    assert len(found) == 20 + 4
    assert found[0].startswith("config.yml:1: a0: unknown field")
    # An alias reports the line of the node it names (a18's, on line 19).
    assert "config.yml:19: Endpoints[3]: expected a mapping, got a list" in found


def test_loads_wants_text() -> None:
    with pytest.raises(TypeError, match=r"loads\(\) needs the YAML as a str"):
        loads(b"Http: {}")  # type: ignore[arg-type]


def test_result_is_a_config() -> None:
    assert isinstance(loads(GOOD_ENDPOINT), Config)
