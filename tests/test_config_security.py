"""Our security additions to the config: policies, extra proxy credentials, limits, stores."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keybroker.config.loader import loads
from keybroker.errors import ConfigError

BASE = """
Security:
  ReplayCache: {replay}
  ReplayProtection: {protection}
  AllowedClientCIDRs: [{cidrs}]
  MetricsClientCIDRs: [{metrics}]
Http:
  Workers: {workers}
Endpoints:
  - CloudAccountName: a
    Vendor: aws
    AllowedHosts: [".s3.example-compatible.com"]
    MaxBodyBytes: {maxbody}
    MaxConcurrentRequests: 8
    Policy:
      Preset: {preset}
      Services: [s3, ec2]
      Actions: ["ec2:Describe*", "s3:GetObject"]
      DenyActions: ["s3:DeleteObject"]
      Regions: [us-east-1]
      SourceCIDRs: [{src}]
    Credentials:
      Proxy: {{AccessKey: AKIDPROXY1, SecretKey: pxy-sk-one-00001, ExpiresAt: 2027-01-31T00:00:00Z}}
      AdditionalProxies:
        - {{AccessKey: AKIDPROXY2, SecretKey: proxy-secret-two-0002}}
        - {{AccessKey: {dup}, SecretKey: proxy-secret-three-03, ExpiresAt: 2027-02-01}}
      Real: {{AccessKey: AKIAREAL1, SecretKey: real-secret-one-0001}}
"""

GOOD = dict(
    replay="redis://127.0.0.1:6379/0",
    protection="all",
    cidrs="10.0.0.0/8, 192.168.1.7",
    metrics="10.1.2.0/24, '::1/128'",
    workers=0,
    maxbody=1024,
    preset="read-only",
    src="203.0.113.0/24",
    dup="AKIDPROXY3",
)


def test_every_security_field_loads() -> None:
    cfg = loads(BASE.format(**GOOD))
    ep = cfg.endpoints[0]
    assert cfg.security.replay_cache == "redis://127.0.0.1:6379/0"
    assert cfg.security.replay_protection == "all"
    assert cfg.security.allowed_client_cidrs == ["10.0.0.0/8", "192.168.1.7"]
    assert cfg.security.metrics_client_cidrs == ["10.1.2.0/24", "::1/128"]
    assert cfg.http.workers == 0
    assert ep.allowed_hosts == [".s3.example-compatible.com"]
    assert ep.max_body_bytes == 1024 and ep.max_concurrent_requests == 8
    assert ep.policy.preset == "read-only"
    assert ep.policy.actions == ["ec2:Describe*", "s3:GetObject"]
    assert ep.policy.deny_actions == ["s3:DeleteObject"]
    assert ep.policy.source_cidrs == ["203.0.113.0/24"]
    assert ep.proxy.expires_at == datetime(2027, 1, 31, tzinfo=UTC)
    assert [c.access_key for c in ep.additional_proxies] == ["AKIDPROXY2", "AKIDPROXY3"]
    assert ep.additional_proxies[1].expires_at == datetime(2027, 2, 1, tzinfo=UTC)
    assert ep.additional_proxies[0].expires_at is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"replay": "memcached://x"},
            "Security.ReplayCache: expected memory, off or a redis:// URL",
        ),
        (
            {"protection": "some"},
            "Security.ReplayProtection: expected one of mutating, all, off, got 'some'",
        ),
        ({"protection": "[all]"}, "Security.ReplayProtection: expected a string"),
        ({"cidrs": "10.0.0.0/33"}, "Security.AllowedClientCIDRs[0]: not an IP network"),
        ({"metrics": "'::1/128', localhost"}, "Security.MetricsClientCIDRs[1]: not an IP network"),
        ({"workers": -1}, "Http.Workers: expected an integer >= 0"),
        ({"maxbody": 0}, "Endpoints[0].MaxBodyBytes: must be greater than 0"),
        ({"preset": "read-mostly"}, "Endpoints[0].Policy.Preset: unknown preset 'read-mostly'"),
        ({"src": "nope"}, "Endpoints[0].Policy.SourceCIDRs[0]: not an IP network"),
        (
            {"dup": "AKIDPROXY1"},
            "Endpoints[0].Credentials.AdditionalProxies[1].AccessKey: duplicate proxy access key",
        ),
    ],
)
def test_bad_security_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads(BASE.format(**{**GOOD, **change}), "c.yml")
    assert any(message in p for p in err.value.problems), err.value.problems


def test_bad_expiry_is_named_with_its_line() -> None:
    text = BASE.format(**GOOD).replace("ExpiresAt: 2027-01-31T00:00:00Z", "ExpiresAt: soon")
    with pytest.raises(ConfigError) as err:
        loads(text, "c.yml")
    assert any(
        p.startswith("c.yml:") and "Credentials.Proxy.ExpiresAt: expected an RFC 3339 time" in p
        for p in err.value.problems
    ), err.value.problems


@pytest.mark.parametrize("value", ["mutating", "all", "off"])
def test_every_replay_protection_loads(value: str) -> None:
    assert loads(f"Security: {{ReplayProtection: {value}}}\n").security.replay_protection == value


def test_replay_protection_defaults_to_mutating() -> None:
    assert loads("Endpoints: []\n").security.replay_protection == "mutating"


def test_metrics_readers_default_to_loopback() -> None:
    cfg = loads("Endpoints: []\n")
    assert cfg.security.metrics_client_cidrs == ["127.0.0.0/8", "::1/128"]
    assert loads("Security: {MetricsClientCIDRs: []}\n").security.metrics_client_cidrs == []
