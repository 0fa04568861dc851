"""What ``keybroker check`` looks at beyond the file itself: would ``serve`` start, and is the
configuration as safe as it could be?

:func:`preflight` returns two lists, each line naming the setting:

* ``problems`` — ``serve`` would fail to start (a TLS certificate that does not load, a key
  service whose KMS cannot be set up, a log or audit directory that cannot be written);
* ``warnings`` — ``serve`` would run, less safely than it could (plain HTTP beyond this
  machine, audit off or unsigned, a refusal turned off, an expired or soon-expiring proxy
  credential, the replay cache off, ``/metrics`` open to anyone).  ``check --strict`` treats
  them as problems.

Nothing is started, bound or written.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from keybroker.config.check_keyservice import key_policy_warnings
from keybroker.errors import ConfigError
from keybroker.settings import Config, loopback_only

__all__ = ["EXPIRY_WARNING", "Findings", "preflight"]

#: a proxy credential expiring sooner than this is worth a warning
EXPIRY_WARNING = timedelta(days=7)


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def preflight(config: Config, now: datetime) -> Findings:
    """Check what ``serve`` needs besides a valid file (see the module docstring)."""
    found = Findings()
    _tls(config, found)
    _writable_dir("Log.Output", config.log.output, found)
    if config.audit.enabled:
        _writable_dir("Audit.Output", config.audit.output, found)
    _key_service(config, found)
    _exposure(config, found)
    _credentials(config, now, found)
    found.warnings.extend(key_policy_warnings(config))
    return found


def _tls(config: Config, found: Findings) -> None:
    tls = config.http.tls
    if not tls.enabled:
        return
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        found.problems.append(f"Http.Tls: cannot load CertFile/KeyFile: {reason}")
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            found.problems.append(f"Http.Tls.ClientCAFile: cannot load: {reason}")


def _writable_dir(setting: str, path: str, found: Findings) -> None:
    """The directory exists and is writable, or can be created (its nearest existing
    ancestor is a writable directory)."""
    if path in ("", "-"):
        return
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        found.problems.append(f"{setting}: {probe} is not a directory")
    elif not os.access(probe, os.W_OK | os.X_OK):
        found.problems.append(f"{setting}: {probe} is not writable by this user")


def _key_service(config: Config, found: Findings) -> None:
    if not config.key_service.enabled:
        return
    from keybroker.keyservice.service import build_store

    try:
        build_store(config.key_service)
    except ConfigError as exc:  # its messages already name KeyService.KMS
        found.problems += exc.problems


def _exposure(config: Config, found: Findings) -> None:
    http, security = config.http, config.security
    if not http.tls.enabled and not loopback_only(http.address):
        found.warnings.append(
            f"Http.Address {http.address!r} listens beyond this machine without TLS: "
            "signed requests and the vendors' answers travel in clear"
        )
    if not config.audit.enabled:
        found.warnings.append("Audit.Enabled is false: no record of what the platform did")
    elif not config.audit.signing_key:
        found.warnings.append(
            "Audit.SigningKey is not set: the audit chain is not signed "
            "(keybroker audit init makes a key)"
        )
    if not config.forbidden.forbidden_account_not_found:
        found.warnings.append(
            "Forbidden.ForbiddenAccountNotFound is false: requests for unknown accounts are "
            "passed on unsigned"
        )
    if not config.forbidden.forbidden_proxy_credential_err:
        found.warnings.append(
            "Forbidden.ForbiddenProxyCredentialErr is false: requests whose proxy signature "
            "does not verify are passed on"
        )
    if security.replay_cache == "off":
        found.warnings.append("Security.ReplayCache is off: captured requests can be replayed")
    if not security.metrics_client_cidrs:
        found.warnings.append(
            "Security.MetricsClientCIDRs is empty: /metrics (account names, traffic) is open "
            "to every client"
        )


def _credentials(config: Config, now: datetime, found: Findings) -> None:
    for i, endpoint in enumerate(config.endpoints):
        for cred in (endpoint.proxy, *endpoint.additional_proxies):
            if cred.expires_at is None:
                continue
            where = f"Endpoints[{i}] ({endpoint.cloud_account_name}): proxy key {cred.access_key}"
            when = cred.expires_at.isoformat(timespec="seconds")
            if cred.expires_at <= now:
                found.warnings.append(f"{where} expired at {when}: it is refused")
            elif cred.expires_at - now < EXPIRY_WARNING:
                found.warnings.append(f"{where} expires at {when}, within 7 days")
