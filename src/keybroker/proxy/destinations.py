"""Where a request may be sent with a real credential (or passed on unsigned).

The rules, secure by default:

* A known account's request goes to its endpoint's ``Upstream`` when one is configured
  (the operator named that host explicitly), else to the origin URI / the vendor's public
  endpoint — and then only to a vendor API host (:mod:`keybroker.proxy.hostscope`).
* IP literals (in any spelling) and ``localhost`` names are never vendor hosts.
* A path stays under the ``Upstream``'s path prefix (:mod:`keybroker.proxy.pathscope`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from keybroker.errors import MalformedRequest

_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
# The usual origin URI: http(s), a plain host name without port or user info, no fragment.
# Such a URI is split here without urlsplit; anything else takes the general path.
_PLAIN_ORIGIN = re.compile(r"(?i:(https?))://([A-Za-z0-9.\-]+)([/?][\x21-\x22\x24-\x7e]*)?")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+")
_BAD_NETLOC = re.compile(r"[@ \t\r\n\\]")

__all__ = ["Destination", "is_ip_literal", "parse_base_url", "parse_origin_uri"]


@dataclass(frozen=True, slots=True)
class Destination:
    """An upstream origin: scheme, host (``name`` or ``name:port``) and a path prefix."""

    scheme: str
    host: str
    prefix: str = ""

    @property
    def hostname(self) -> str:
        return _split_host(self.host)[0]


def _split_host(netloc: str) -> tuple[str, int | None]:
    if _PLAIN_HOST.fullmatch(netloc):  # what urlsplit would say, without it
        return netloc.lower(), None
    try:
        parts = urlsplit(f"//{netloc}")
    except ValueError:  # an unbalanced [ or ]
        raise MalformedRequest(f"invalid host {netloc!r}") from None
    try:
        return (parts.hostname or "", parts.port)
    except ValueError:
        raise MalformedRequest(f"invalid port in host {netloc!r}") from None


def _check_netloc(netloc: str, what: str) -> None:
    if not netloc or _BAD_NETLOC.search(netloc):
        raise MalformedRequest(f"{what}: invalid host")
    hostname, _ = _split_host(netloc)
    if not hostname:
        raise MalformedRequest(f"{what}: missing host")


def parse_origin_uri(value: str) -> tuple[Destination, str, str]:
    """Split ``X-Mcdn-Origin-Uri`` into (destination, raw path, raw query).

    Raises ``MalformedRequest`` for anything but an absolute http(s) URL with a host.
    """
    plain = _PLAIN_ORIGIN.fullmatch(value)
    if plain is not None:
        scheme, host, rest = plain.groups()
        path, _, query = (rest or "").partition("?")
        return Destination(scheme.lower(), host.lower()), path or "/", query
    return _parse_origin_uri(value)


def _parse_origin_uri(value: str) -> tuple[Destination, str, str]:
    """:func:`parse_origin_uri` for any URI, through urlsplit."""
    if not value or not _VISIBLE_ASCII.fullmatch(value):
        raise MalformedRequest("X-Mcdn-Origin-Uri must be an absolute http(s) URL")
    try:
        parts = urlsplit(value)
    except ValueError:  # an unbalanced [ or ] in the host
        raise MalformedRequest("X-Mcdn-Origin-Uri is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise MalformedRequest("X-Mcdn-Origin-Uri must be an absolute http(s) URL")
    _check_netloc(parts.netloc, "X-Mcdn-Origin-Uri")
    dest = Destination(parts.scheme.lower(), _normal_netloc(parts.scheme, parts.netloc))
    return dest, parts.path or "/", parts.query


def parse_base_url(value: str) -> Destination:
    """Parse a configured ``Upstream`` base URL (``ValueError`` with a message if invalid)."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{value!r} must not carry credentials, a query or a fragment")
    try:
        _check_netloc(parts.netloc, "Upstream")
    except MalformedRequest as exc:
        raise ValueError(str(exc)) from None
    return Destination(
        parts.scheme.lower(), _normal_netloc(parts.scheme, parts.netloc), parts.path.rstrip("/")
    )


def _normal_netloc(scheme: str, netloc: str) -> str:
    host, port = _split_host(netloc)
    default = 443 if scheme.lower() == "https" else 80
    bracketed = f"[{host}]" if ":" in host else host
    return bracketed if port in (None, default) else f"{bracketed}:{port}"


def is_ip_literal(hostname: str) -> bool:
    """True for any spelling an HTTP client could treat as an address (incl. 0x7f.1, 2130706433)."""
    h = hostname.strip("[]").rstrip(".")
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    labels = h.split(".")
    return bool(labels) and all(_numeric_label(x) for x in labels if x)


def _numeric_label(label: str) -> bool:
    lab = label.lower()
    if lab.startswith("0x"):
        return all(c in "0123456789abcdef" for c in lab[2:])
    return lab.isdigit()
