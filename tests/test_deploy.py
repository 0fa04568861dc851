"""The deployment artifacts under ``deploy/``, checked with the tools that will read them:
the systemd unit with ``systemd-analyze`` (verify, and the offline security exposure score),
the Prometheus rules with ``promtool`` (syntax and unit tests), and every metric the rules and
the Grafana dashboard name against what a running keybroker's ``/metrics`` really exposes."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.test_metrics import parse

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNIT = DEPLOY / "systemd" / "keybroker.service"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "keybroker.json"

# A metric name as PromQL writes it; histogram series names map back to their family.
_METRIC = re.compile(r"\bkeybroker_[a-z_]+\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # scripts/setup installs both; a missing one is a broken setup
        pytest.fail(f"{name} is not installed (scripts/setup installs it)")
    return path


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's keybroker: verify checks that
    the command exists and is executable."""
    keybroker = Path(sys.executable).with_name("keybroker")
    assert keybroker.exists()
    text = UNIT.read_text().replace("/opt/keybroker/bin/keybroker", str(keybroker))
    copy = tmp_path / "keybroker.service"
    copy.write_text(text)
    return copy


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    r = subprocess.run(
        [_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr  # unknown keys are only warnings: none allowed


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    text = UNIT.read_text()
    for directive in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ReadWritePaths=/var/log/keybroker /var/lib/keybroker",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=1",
    ):
        assert directive in text, directive
    unit = _unit_for_this_machine(tmp_path)
    r = subprocess.run(
        [_tool("systemd-analyze"), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert found, r.stdout[-500:]
    assert float(found.group(1)) <= 2.0  # systemd calls up to 3.9 "OK"; we stay well below


def test_prometheus_rules_check_and_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        cwd=RULES.parent,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_have_the_alerts_an_operator_needs() -> None:
    names = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert {
        "KeybrokerDown",
        "KeybrokerHigh5xxRatio",
        "KeybrokerUpstreamErrors",
        "KeybrokerCredentialExpiringSoon",
        "KeybrokerAuditFailing",
        "KeybrokerReplayCacheDown",
    } <= names


def _named_metrics(text: str) -> set[str]:
    names = set()
    for name in _METRIC.findall(text):
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    return exprs


@pytest.mark.slow
def test_every_metric_in_rules_and_dashboard_is_exposed(tmp_path: Path) -> None:
    proxy_sk = secrets.token_urlsafe(30)
    logscan.register(proxy_sk)
    expires = datetime.now(UTC) + timedelta(days=3)
    endpoint = aws_endpoint(
        "deploy-check", "AKIDPROXYDEPLOY00001", proxy_sk, "AKIAREAL", "r" * 30, "http://x.test"
    )
    endpoint.proxy = Credential("AKIDPROXYDEPLOY00001", Secret(proxy_sk), expires_at=expires)
    with proxy_running(Config(endpoints=[endpoint])) as (url, _):
        r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    families = parse(r.text)
    named = _named_metrics(RULES.read_text()) | _named_metrics("\n".join(_dashboard_exprs()))
    missing = named - set(families)
    assert not missing, f"named in deploy/ but not exposed: {sorted(missing)}"
    expiry = families["keybroker_credential_expiry_timestamp_seconds"]
    got = expiry.get("keybroker_credential_expiry_timestamp_seconds", account="deploy-check")
    assert got == pytest.approx(expires.timestamp())


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "keybroker" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
