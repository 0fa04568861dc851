"""Fuzzing the config loader: whatever the text, the answer is a Config or a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.config.loader import loads
from keybroker.errors import ConfigError
from keybroker.settings import Config

SAMPLE = (Path(__file__).parent / "data" / "configs" / "full.yml").read_text()
SECRETS = ["0123", "real+s3/secret=value", "FwoGZXIvYXdzEXAMPLESESSIONTOKEN", "volc real secret"]

KEYS = [
    "Http", "Address", "Tls", "Enabled", "CertFile", "KeyFile", "MaxBodyBytes", "Log", "Level",
    "MaxAge", "Audit", "Forbidden", "ForbiddenAccountNotFound", "Security", "ClockSkewSeconds",
    "Endpoints", "CloudAccountName", "Vendor", "Upstream", "Credentials", "Proxy", "Real",
    "AccessKey", "SecretKey", "AccessToken", "<<", "http", "Adress",
]  # fmt: skip
YAML_BITS = [
    *" \n\n\n  :-[]{},#&*!|>'\"%@`?$~.0x9aZ\t\x00é",
    ": ", "- ", "\n  ", "&a ", "*a", "!!str ", "!!binary ", "!foo ", "${", "$${", "${file:/",
    "${sealed:", "${X}", "---\n", "...", "true", "null", "-1", "1e9", ".nan", "<<: *a",
]  # fmt: skip

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str) -> Config | ConfigError:
    try:
        return loads(text, "fuzz.yml", env={"X": "from-env"})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must say what is wrong"
        assert all(isinstance(p, str) and p.startswith("fuzz.yml") for p in exc.problems)
        return exc


@FAST
@given(st.lists(st.sampled_from(KEYS + YAML_BITS), max_size=60).map("".join))
def test_yaml_ish_text(text: str) -> None:
    assert isinstance(outcome(text), Config | ConfigError)


@FAST
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    assert isinstance(outcome(text), Config | ConfigError)


@pytest.mark.slow
@FAST
@given(st.data())
def test_mutated_sample(data: st.DataObject) -> None:
    """Small edits of a valid file: delete, repeat or replace a span."""
    text = SAMPLE
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 40)))
        insert = data.draw(st.sampled_from(["", text[start:end] * 2, *YAML_BITS, *KEYS]))
        text = text[:start] + insert + text[end:]
    result = outcome(text)
    if isinstance(result, ConfigError):
        for secret in SECRETS[1:]:  # "0123" is too short to be told apart from line numbers
            assert not any(secret in p for p in result.problems)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20)
)
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(KEYS), kids, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@FAST
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=6))
def test_structured_documents(doc: dict[str, object]) -> None:
    """Documents with the right key names and arbitrary values of every YAML type."""
    assert isinstance(outcome(yaml.safe_dump(doc, allow_unicode=True)), Config | ConfigError)
