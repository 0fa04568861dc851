"""The path an audit record keeps: every signature, credential or token parameter is gone,
however the attacker (or an SDK) spells its name, and a configured secret under any name."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.audit.event import audit_path
from keybroker.logs.redact import SecretRegistry

CREDENTIAL_NAMES = [
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId",
    "Signature", "OSSAccessKeyId", "x-oss-signature", "X-Goog-Signature", "X-Goog-Credential",
    "GoogleAccessId", "q-signature", "q-ak", "X-Tos-Signature", "X-Tos-Credential",
    "x-obs-signature", "SecurityToken", "client_secret", "access_token", "SessionToken",
    "Authorization", "api_key", "password", "sig", "AccessKeyId",
]  # fmt: skip
BENIGN = [("prefix", "logs/2026"), ("max-keys", "10"), ("Action", "ListBuckets"), ("uploads", "")]


def _spell(name: str, upper: list[bool], encode: list[bool]) -> str:
    out = []
    for i, ch in enumerate(name):
        ch = ch.upper() if upper[i % len(upper)] else ch.lower()
        out.append(f"%{ord(ch):02X}" if encode[i % len(encode)] else ch)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.sampled_from(CREDENTIAL_NAMES), min_size=1, max_size=5),
    upper=st.lists(st.booleans(), min_size=1, max_size=8),
    encode=st.lists(st.booleans(), min_size=1, max_size=8),
    order=st.randoms(use_true_random=False),
    plus=st.booleans(),
)
def test_credential_parameters_never_reach_the_record(
    names: list[str], upper: list[bool], encode: list[bool], order: object, plus: bool
) -> None:
    values = {f"V{secrets.token_hex(12)}" for _ in names}
    params = [f"{_spell(n, upper, encode)}={v}" for n, v in zip(names, values, strict=False)]
    params += [f"{k}={quote(v, safe='')}" if v else k for k, v in BENIGN]
    order.shuffle(params)  # type: ignore[attr-defined]
    target = "/bucket/key%20name?" + "&".join(params)
    if plus:
        target = target.replace("%20", "+")
    kept = audit_path(target, SecretRegistry())
    for value in values:
        assert value not in kept
    assert "prefix=logs%2F2026" in kept and "max-keys=10" in kept and "uploads" in kept
    assert kept.startswith("/bucket/key")


@settings(max_examples=100, deadline=None)
@given(name=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), raw=st.booleans())
def test_a_configured_secret_goes_under_any_name(name: str, raw: bool) -> None:
    registry = SecretRegistry()
    secret = "s3cr3t/" + secrets.token_urlsafe(18)
    registry.register(secret)
    value = secret if raw else quote(secret, safe="")
    kept = audit_path(f"/p?{name}={value}&keep=1", registry)
    assert secret not in kept and quote(secret, safe="") not in kept
    assert kept.endswith("keep=1")


def test_long_paths_are_capped() -> None:
    assert len(audit_path("/" + "a" * 5000, SecretRegistry())) <= 1027
