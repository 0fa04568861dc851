"""A one-screen, secret-free description of a :class:`~keybroker.settings.Config`.

``keybroker check`` prints it so an operator can see what a config file means before serving
it.  Secrets are never rendered: only access key *ids* appear, the real one masked
(``AKIA****WXYZ``), and upstream URLs lose any user info, query and fragment.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from keybroker import __version__
from keybroker.settings import Config, Endpoint, all_interfaces

__all__ = ["MAX_ACCOUNTS_SHOWN", "mask_key", "render_banner", "render_summary"]

#: Accounts listed before the summary says "... and N more" (it has to fit one screen).
MAX_ACCOUNTS_SHOWN = 20


def mask_key(key: str) -> str:
    """``AKIAIOSFODNN7EXAMPLE`` -> ``AKIA****MPLE``; short ids keep less, tiny ones nothing."""
    if len(key) >= 12:
        return f"{key[:4]}****{key[-4:]}"
    if len(key) >= 8:
        return f"{key[:2]}****{key[-2:]}"
    return "****"


def _clip(text: str, limit: int = 32) -> str:
    flat = "".join(c if c.isprintable() else "?" for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _safe_url(url: str) -> str:
    """scheme://host[:port]/path: user info, query and fragment may carry credentials."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return _clip(f"{parts.scheme}://{host}{port}{parts.path}", 60)


def _listen(cfg: Config) -> list[str]:
    tls = cfg.http.tls
    if not tls.enabled:
        return [f"  Listen     http on {_clip(cfg.http.address)}  (TLS off)"]
    return [
        f"  Listen     https on {_clip(tls.address)}  (TLS on; plain HTTP not served)",
        f"             cert {_clip(tls.cert_file, 60)}",
        f"             key  {_clip(tls.key_file, 60)}",
    ]


def _logs(cfg: Config) -> list[str]:
    log, audit = cfg.log, cfg.audit
    where = "stderr" if log.output in ("", "-") else _clip(log.output, 60)
    lines = [
        f"  Log        {where}  level {log.level}  "
        f"keep {log.max_age} days  rotate at {log.max_size} MB"
    ]
    if audit.enabled:
        lines.append(
            f"  Audit      {_clip(audit.output, 60)}  "
            f"keep {audit.max_age} days  rotate at {audit.max_size} MB"
        )
        signed = f"signed every {audit.checkpoint_interval} s" if audit.signing_key else "UNSIGNED"
        closed = "refused if unrecorded" if audit.fail_closed else "FORWARDED if unrecorded"
        lines.append(f"             sync {audit.sync}  {closed}  checkpoints {signed}")
    else:
        lines.append("  Audit      off")
    return lines


def _policy(cfg: Config) -> list[str]:
    fb, http = cfg.forbidden, cfg.http
    unknown = "refused (404)" if fb.forbidden_account_not_found else "FORWARDED unverified"
    bad_sig = "refused (401)" if fb.forbidden_proxy_credential_err else "FORWARDED unverified"
    weak = ["  Secrets    weak proxy secrets ALLOWED (AllowWeakProxySecrets)"]
    return [
        f"  Forbidden  unknown account: {unknown}; bad proxy signature: {bad_sig}",
        *(weak if cfg.security.allow_weak_proxy_secrets else []),
        f"  Limits     headers {_size(http.max_header_bytes)}, body {_size(http.max_body_bytes)}, "
        f"connect {_seconds(http.upstream_connect_timeout)}, "
        f"read {_seconds(http.upstream_read_timeout)}, "
        f"shutdown {_seconds(http.shutdown_timeout)}, "
        f"clock skew {cfg.security.clock_skew_seconds}s",
    ]


def _account_row(ep: Endpoint) -> tuple[str, str, str, str, str]:
    upstream = _safe_url(ep.upstream) if ep.upstream else "(vendor default)"
    return (
        _clip(ep.cloud_account_name),
        _clip(ep.vendor, 12),
        _clip(ep.proxy.access_key),
        mask_key(ep.real.access_key),
        upstream,
    )


def _accounts(endpoints: list[Endpoint]) -> list[str]:
    if not endpoints:
        return ["  Accounts   none"]
    rows = [("NAME", "VENDOR", "PROXY KEY", "REAL KEY", "UPSTREAM")]
    rows += [_account_row(ep) for ep in endpoints[:MAX_ACCOUNTS_SHOWN]]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"  Accounts   {len(endpoints)}"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("    " + "  ".join([*cells, row[4]]))
    if len(endpoints) > MAX_ACCOUNTS_SHOWN:
        lines.append(f"    ... and {len(endpoints) - MAX_ACCOUNTS_SHOWN} more")
    return lines


def render_summary(cfg: Config) -> str:
    """A few lines describing ``cfg`` for a terminal; never contains a secret value."""
    lines = ["keybroker configuration"]
    lines += _listen(cfg) + _logs(cfg) + _policy(cfg) + _accounts(cfg.endpoints)
    return "\n".join(lines)


def render_banner(cfg: Config, workers: int) -> str:
    """What ``keybroker serve`` prints on the terminal as it starts: where it listens, what it
    serves and where its records go — a few lines, never a secret."""
    http, tls = cfg.http, cfg.http.tls
    where = f"https on {tls.address}" if tls.enabled else f"http on {http.address}"
    if all_interfaces(http.serving_address):
        where += "  (ALL interfaces)"
    names = ", ".join(_clip(e.cloud_account_name, 20) for e in cfg.endpoints[:5])
    more = f", ... ({len(cfg.endpoints)} in all)" if len(cfg.endpoints) > 5 else ""
    log = "stderr" if cfg.log.output in ("", "-") else _clip(cfg.log.output, 60)
    audit = _clip(cfg.audit.output, 60) if cfg.audit.enabled else "OFF"
    lines = [
        f"keybroker {__version__} starting",
        f"  listen    {_clip(where, 70)}, {workers} worker{'s' if workers > 1 else ''}",
        f"  accounts  {names or 'none'}{more}",
        f"  log       {log} (level {cfg.log.level})",
        f"  audit     {audit}",
        f"  replay    {_clip(_replay(cfg), 60)}",
    ]
    if cfg.key_service.enabled:
        lines.append(f"  keys      key service on {cfg.key_service.path_prefix}")
    return "\n".join(lines)


def _replay(cfg: Config) -> str:
    cache = cfg.security.replay_cache
    if cache.startswith("redis"):
        return "redis (shared)"
    return "off" if cache == "off" else cache
