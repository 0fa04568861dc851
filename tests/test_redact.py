"""Redaction of headers, URLs and free text, and the registered-secret scrubber."""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.logs.redact import (
    MASK,
    SecretRegistry,
    is_secret_name,
    redact_authorization,
    redact_headers,
    redact_text,
    redact_url,
    register_config_secrets,
)
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint

SIG = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"

# (Authorization as each vendor's SDK sends it, what may remain after redaction)
AUTHORIZATIONS = [
    (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={SIG}",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request",
    ),
    (
        "HMAC-SHA256 Credential=AKLTproxy/20240101/cn-beijing/iam/request, "
        f"SignedHeaders=content-type;host;x-content-sha256;x-date, Signature={SIG}",
        "HMAC-SHA256 Credential=AKLTproxy/20240101/cn-beijing/iam/request",
    ),
    (
        "TC3-HMAC-SHA256 Credential=AKIDtc/2024-01-01/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={SIG}",
        "TC3-HMAC-SHA256 Credential=AKIDtc/2024-01-01/cvm/tc3_request",
    ),
    (
        f"SDK-HMAC-SHA256 Access=HWAK123, SignedHeaders=host;x-sdk-date, Signature={SIG}",
        "SDK-HMAC-SHA256 Access=HWAK123",
    ),
    (
        f"ACS3-HMAC-SHA256 Credential=LTAIak,SignedHeaders=host;x-acs-date,Signature={SIG}",
        "ACS3-HMAC-SHA256 Credential=LTAIak",
    ),
    (
        f"bce-auth-v1/BCEAK/2024-01-01T00:00:00Z/1800/host;x-bce-date/{SIG}",
        "bce-auth-v1/BCEAK",
    ),
    (f"QBox QNAK:{SIG}", "QBox QNAK:***"),
    (f"Qiniu QNAK:{SIG}", "Qiniu QNAK:***"),
    (f"SharedKey devstoreaccount1:{SIG}", "SharedKey devstoreaccount1:***"),
    (f"Bearer {SIG}", "Bearer ***"),
    (f"Basic {SIG}", "Basic ***"),
    (
        f"EG1-HMAC-SHA256 client_token=akab-ct;access_token=akab-at;"
        f"timestamp=20240101T00:00:00+0000;nonce=n;signature={SIG}",
        "EG1-HMAC-SHA256 ***",
    ),
    # garbled: a credential value outside the access-key alphabet is not shown
    (f"AWS4-HMAC-SHA256 Credential={SIG} with spaces, Signature={SIG}", None),
    (SIG, "***"),
    ('"quoted scheme" whatever', "***"),
    ("", ""),
]


@pytest.mark.parametrize(("value", "expected"), AUTHORIZATIONS)
def test_authorization_keeps_only_scheme_and_signer(value: str, expected: str | None) -> None:
    shown = redact_authorization(value)
    assert SIG not in shown
    if expected is not None:
        assert shown == expected


def test_authorization_of_a_garbled_credential_masks_it() -> None:
    shown = redact_authorization(f"AWS4-HMAC-SHA256 Credential=a b{SIG}, Signature=x")
    assert shown == "AWS4-HMAC-SHA256 Credential=***"


@pytest.mark.parametrize(
    "name",
    [
        "X-Amz-Security-Token",
        "x-security-token",
        "X-TC-Token",
        "Cookie",
        "Set-Cookie",
        "X-Acs-Security-Token",
        "x-bce-security-token",
        "X-Auth-Token",
        "X-Api-Key",
        "X-Goog-Api-Key",
        "X-Ca-Signature",
        "X-Client-Secret",
    ],
)
def test_token_like_headers_are_masked(name: str) -> None:
    assert redact_headers({name: SIG}) == {name: MASK}


def test_innocent_headers_pass_unchanged() -> None:
    headers = {
        "Host": "s3.amazonaws.com",
        "X-Amz-Date": "20240101T000000Z",
        "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
        "Content-Type": "application/json",
        "X-Mcdn-Cloud-Account-Name": "acct",
    }
    assert redact_headers(headers) == headers


def test_headers_multidict_repeats_are_joined_and_redacted() -> None:
    headers = CIMultiDict(
        [("Authorization", f"Bearer {SIG}"), ("Cookie", "a=1"), ("cookie", "b=2"), ("X-A", "1")]
    )
    shown = redact_headers(headers)
    assert shown == {"Authorization": "Bearer ***", "Cookie": "***, ***", "X-A": "1"}


def test_headers_accept_pairs_and_proxy_authorization() -> None:
    shown = redact_headers([("Proxy-Authorization", f"Basic {SIG}")])
    assert shown == {"Proxy-Authorization": "Basic ***"}


@pytest.mark.parametrize(
    "param",
    [
        "X-Amz-Signature",
        "x-amz-signature",
        "X-Amz-Security-Token",
        "X-Signature",
        "X-Security-Token",
        "Signature",
        "signature",
        "token",
        "TOKEN",
        "AccessToken",
        "SecurityToken",
        "access_token",
        "sig",
        "X-Goog-Signature",
        "client_secret",
        "X%2DAmz%2DSignature",
    ],
)
def test_url_credential_parameters_are_masked(param: str) -> None:
    url = f"https://h.example/p/a%20b?Action=List&{param}={SIG}&Version=1#frag"
    assert redact_url(url) == f"https://h.example/p/a%20b?Action=List&{param}=***&Version=1#frag"


def test_url_keeps_the_access_key_and_the_rest_byte_identical() -> None:
    url = (
        "https://bucket.s3.amazonaws.com/k%2Fey?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}&flag"
    )
    assert redact_url(url) == url.replace(SIG, MASK)


def test_url_password_is_masked_and_user_kept() -> None:
    assert redact_url(f"http://alice:{SIG}@h:8080/x?y=1") == "http://alice:***@h:8080/x?y=1"
    assert redact_url("http://alice@h/x") == "http://alice@h/x"


def test_url_without_query_is_unchanged() -> None:
    assert redact_url("https://h/p#Signature=1") == "https://h/p#Signature=1"


def test_malformed_url_still_redacted() -> None:
    assert redact_url(f"http://[::1/x?token={SIG}") == "http://[::1/x?token=***"


def test_redact_text_masks_inline_credentials() -> None:
    text = f"GET /o?X-Amz-Signature={SIG}&a=1 failed; Authorization: x, Signature={SIG}"
    shown = redact_text(text)
    assert SIG not in shown
    assert "X-Amz-Signature=***&a=1" in shown


def test_is_secret_name() -> None:
    assert is_secret_name("secret_key")
    assert is_secret_name("Client-Token")
    assert not is_secret_name("access_key")
    assert not is_secret_name("SignedHeaders")


# --- fuzzing -----------------------------------------------------------------------------

_SECRET_PARAMS = ["X-Amz-Signature", "Signature", "token", "AccessToken", "SecurityToken"]
_VALUE = st.text(alphabet="ABCDEFabcdef0123456789-_.~%", min_size=1, max_size=40)


@given(
    name=st.sampled_from(_SECRET_PARAMS),
    upper=st.booleans(),
    value=_VALUE,
    before=st.lists(st.tuples(st.sampled_from(["a", "Action", "n"]), _VALUE), max_size=3),
    after=st.lists(st.tuples(st.sampled_from(["b", "Version"]), _VALUE), max_size=3),
)
def test_fuzz_url_secret_parameter_never_survives(
    name: str,
    upper: bool,
    value: str,
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
) -> None:
    pairs = [*before, (name.upper() if upper else name, value), *after]
    url = "https://h.example/p?" + "&".join(f"{k}={v}" for k, v in pairs)
    shown = redact_url(url)
    got = parse_qsl(urlsplit(shown).query, keep_blank_values=True)
    assert len(got) == len(pairs)
    for (k, v), (gk, gv) in zip(pairs, got, strict=True):
        assert gk.lower() == k.lower()
        if is_secret_name(k):
            assert gv == MASK
        else:
            assert f"{k}={v}" in shown


@given(st.text())
def test_fuzz_redactors_never_raise(text: str) -> None:
    redact_url(text)
    redact_text(text)
    redact_authorization(text)
    redact_headers({"Authorization": text, text: text})


@given(
    scope=st.from_regex(
        r"[A-Za-z0-9]{4,20}/2024010[1-9]/[a-z\-]{2,12}/[a-z]{2,8}/aws4_request", fullmatch=True
    ),
    sig=st.text(alphabet="0123456789abcdef", min_size=16),
)
def test_fuzz_aws_authorization_keeps_scope_drops_signature(scope: str, sig: str) -> None:
    value = f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature={sig}"
    shown = redact_authorization(value)
    assert shown == f"AWS4-HMAC-SHA256 Credential={scope}"


# --- the registry ------------------------------------------------------------------------


def test_registry_scrubs_known_values_and_ignores_short_ones() -> None:
    registry = SecretRegistry()
    assert registry.scrub("nothing registered") == "nothing registered"
    registry.register("abc", "s3cr3t-value", Secret("another-secret"), None)
    assert len(registry) == 2
    assert registry.scrub("x abc s3cr3t-value y another-secret") == "x abc *** y ***"


def test_registry_masks_a_longer_secret_whole() -> None:
    registry = SecretRegistry()
    registry.register("secret", "secret-and-more")
    assert registry.scrub("[secret-and-more]") == "[***]"


def test_registry_matches_json_escaped_spellings() -> None:
    registry = SecretRegistry()
    secret = 'q"uo\\te-é-\n'
    registry.register(secret)
    for spelling in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)):
        assert secret not in registry.scrub(spelling)
        assert json.dumps(secret)[1:-1] not in registry.scrub(spelling)


def test_registry_rescans_text_spliced_by_masking() -> None:
    registry = SecretRegistry()
    registry.register("a***bc")
    # masking the inner occurrence re-creates the value around it: it must go too
    assert registry.scrub("aa***bcbc") == "***"


def test_registry_clear() -> None:
    registry = SecretRegistry()
    registry.register("secret-one")
    registry.clear()
    assert registry.scrub("secret-one") == "secret-one"


def test_registry_concurrent_registration() -> None:
    registry = SecretRegistry()
    values = [f"secret-{i:04d}" for i in range(200)]

    def add(chunk: list[str]) -> None:
        for v in chunk:
            registry.register(v)

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(registry) == 200
    assert registry.scrub(" ".join(values)) == " ".join([MASK] * 200)


def test_register_config_secrets_takes_every_endpoint_secret() -> None:
    proxy = Credential("PROXYAK", Secret("proxy-secret-1"), access_token=Secret("proxy-token-1"))
    real = Credential("REALAK", Secret("real-secret-1"), client_secret=Secret("real-client-1"))
    config = Config(endpoints=[Endpoint("acct", "aws", proxy, real)])
    registry = SecretRegistry()
    register_config_secrets(config, registry)
    line = "proxy-secret-1 proxy-token-1 real-secret-1 real-client-1 PROXYAK REALAK"
    assert registry.scrub(line) == "*** *** *** *** PROXYAK REALAK"


@settings(max_examples=200)
@given(secret=st.text(min_size=6, max_size=30), before=st.text(), after=st.text())
def test_fuzz_registry_never_lets_a_value_through(secret: str, before: str, after: str) -> None:
    registry = SecretRegistry()
    registry.register(secret)
    assert secret not in registry.scrub(before + secret + after)


def _longest_first(values: list[str]) -> re.Pattern[str]:
    """The plain model of the registry's pattern: an alternation, longest value first."""
    ordered = sorted(set(values), key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in ordered))


_ALPHABET = 'ab*"\\é'


@st.composite
def _related_values_and_text(draw: st.DrawFn) -> tuple[list[str], str]:
    """Values that are prefixes, suffixes and extensions of one another, and a text made of
    them and of filler from the same few letters, so that matches overlap and nest."""
    base = draw(st.text(alphabet=_ALPHABET, min_size=6, max_size=14))
    related = st.one_of(
        st.just(base),
        st.integers(6, len(base)).map(lambda k: base[:k]),
        st.integers(0, len(base) - 6).map(lambda k: base[k:]),
        st.text(alphabet=_ALPHABET, max_size=4).map(lambda tail: base + tail),
        st.text(alphabet=_ALPHABET, min_size=6, max_size=10),
    )
    values = draw(st.lists(related, min_size=1, max_size=10))
    filler = st.text(alphabet=_ALPHABET + " ", max_size=4)
    pieces = draw(st.lists(st.one_of(st.sampled_from(values), filler), max_size=10))
    return values, "".join(pieces)


@pytest.mark.slow
@settings(max_examples=300)
@given(case=_related_values_and_text())
def test_fuzz_prefix_tree_pattern_removes_what_the_alternation_does(
    case: tuple[list[str], str],
) -> None:
    values, text = case
    registry = SecretRegistry()
    registry.register(*values)
    pattern = registry.pattern
    assert pattern is not None
    # Every spelling (plain and JSON-escaped) of every value, and nothing else.
    spellings = {
        s for v in values for s in (v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1])
    }
    assert pattern.sub(MASK, text) == _longest_first(list(spellings)).sub(MASK, text)
    for s in spellings:
        assert pattern.fullmatch(s)


def test_prefix_tree_keeps_scrubbing_cheap_with_many_secrets() -> None:
    """The registry's pattern is a prefix tree: its size grows with the characters of the
    values, and a value that shares a long prefix with others is still removed whole."""
    registry = SecretRegistry()
    values = [f"shared-prefix-{i:03d}-tail" for i in range(300)]
    registry.register(*values)
    pattern = registry.pattern
    assert pattern is not None
    # One "shared-prefix-" for all 300 values, not 300 copies of it.
    assert pattern.pattern.count("shared") == 1
    assert registry.scrub(f"<{values[123]}>{values[7]}") == f"<{MASK}>{MASK}"
    assert registry.scrub("shared-prefix-123-tai") == "shared-prefix-123-tai"
