"""Which hosts are a vendor's public API: under one of its API domains, and not one of the
customer-controlled hosts that share those domains.

A vendor's domain also names hosts that any of its customers controls: load balancers,
API gateways, function URLs, database and broker endpoints, static websites.  A request
signed with the real key must never go there — whoever controls the host reads the request,
its signature and body.  Each signer lists these under ``excluded_hosts`` next to its
``public_domains``.  In a pattern a leading ``*.`` stands for one or more labels, any other
``*`` for part of one label (``*.execute-api.*.amazonaws.com``).  An operator who really
wants such a host names it in the account's ``AllowedHosts`` (or ``Upstream``):
operator-named hosts are not subject to the exclusions.  Only plain ASCII names (letters,
digits, ``-``, ``_``, ``.``) are ever allowed: a resolver's IDNA would turn other spellings
(``abc\\uff0eexecute-api...``, a full-width full stop) into a host the exclusions never saw.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from keybroker.errors import Forbidden
from keybroker.proxy.destinations import Destination, is_ip_literal

__all__ = ["HostScope", "excluded_host"]

_DNS_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class HostScope:
    """Where a vendor's requests may go.

    ``domains``: the vendor's public API suffixes (``.amazonaws.com``); ``excluded``: patterns
    of customer-controlled hosts under them; ``extra``: the operator's ``AllowedHosts``
    (``.suffix`` entries, ``=name`` for one exact host), not subject to ``excluded``."""

    vendor: str
    domains: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def allows(self, hostname: str) -> bool:
        # only a plain DNS name: IDNA (applied by the resolver and TLS) maps other characters
        # onto ASCII after this check, e.g. a full stop U+FF0E onto "." — past the exclusions
        if not hostname.isascii() or not _DNS_NAME.fullmatch(hostname):
            return False
        h = hostname.lower().rstrip(".")
        if not h or is_ip_literal(h):
            return False
        if _under(h, self.extra):
            return True
        return _under(h, self.domains) and not excluded_host(h, self.excluded)

    def require(self, dest: Destination) -> None:
        """Raise ``Forbidden`` unless ``dest`` is an https public API host of the vendor."""
        if dest.scheme != "https" or not self.allows(dest.hostname):
            raise Forbidden(f"destination host is not a public {self.vendor} API endpoint")


def _under(h: str, domains: Iterable[str]) -> bool:
    # "=name" entries match that exact host; the others are suffixes like ".amazonaws.com"
    return any(h == d[1:] if d[0] == "=" else h.endswith(d) and len(h) > len(d) for d in domains)


def excluded_host(hostname: str, patterns: tuple[str, ...]) -> bool:
    """True if ``hostname`` matches one of ``patterns`` (``*.elb.amazonaws.com``, ...)."""
    if not patterns:
        return False
    return _compiled(patterns).fullmatch(hostname.lower().rstrip(".")) is not None


_LABELS = r"(?:[a-z0-9_-]+\.)+"  # a leading "*.": one or more whole labels
_IN_LABEL = "[a-z0-9_-]*"  # any other "*": part of one label


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_pattern(p.lower())})" for p in patterns))


def _pattern(pattern: str) -> str:
    lead = pattern.startswith("*.")
    body = _IN_LABEL.join(map(re.escape, (pattern[2:] if lead else pattern).split("*")))
    return _LABELS + body if lead else body
