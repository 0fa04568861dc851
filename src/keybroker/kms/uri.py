"""Parse ``kms://`` and ``storage://`` configuration URIs, and resolve secret references.

URI form: ``<scheme>://<name>?<param>=<value>&...`` with ``scheme`` ``kms`` or ``storage``, and
``name`` the backend (``aws``, ``cluster-kms``, ``no-store``, ...).  No user, port, path or
fragment.

Decoding happens exactly once (Constellation decodes values twice, so a ``%`` or ``+`` inside a
secret is corrupted).  Values are decoded as Go's ``url.ParseQuery`` decodes a query — the
spelling Constellation's URIs use, since it builds them with ``url.QueryEscape`` — but once:

- ``%XX`` is the byte ``XX``; the decoded bytes must be UTF-8.  A ``%`` not followed by two hex
  digits is an error (write a literal ``%`` as ``%25``).
- ``+`` is a space, as ``url.QueryEscape`` writes one; a plus sign is ``%2B`` (which is how
  ``url.QueryEscape`` writes it).  In a secret parameter (``SECRET_PARAMS``: ``accessKey``,
  ``clientSecret``, ``connectionString``, ``key``, ``pin``, ``token``) a raw ``+`` is refused
  instead: secrets hold no spaces, and a pasted AWS secret key or base64 value with a literal
  ``+`` would otherwise turn into a different secret without a word.
- Each parameter appears at most once; names are case-sensitive identifiers; a component
  without ``=`` is an error.  Unknown names are rejected by :meth:`ParsedURI.check_known`.

Error messages name the URI's scheme/name and the parameters at fault, never any value.

Secret references (:func:`resolve_secret`): a secret parameter's value may be

- ``env:NAME``  — the value of environment variable ``NAME`` (unset is an error);
- ``file:PATH`` — the contents of file ``PATH``, minus one trailing newline (``\\n`` or
  ``\\r\\n``); the file must be UTF-8;
- ``literal:VALUE`` — exactly ``VALUE`` (for a secret that itself starts with ``env:``...);
- anything else — the literal value.

Environment variables never override a URI value silently: they are read only when the URI says
``env:``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from keybroker.kms.errors import KMSConfigError
from keybroker.secret import Secret

__all__ = ["SECRET_PARAMS", "ParsedURI", "parse_uri", "resolve_secret"]

_SCHEMES = ("kms", "storage")
_URI_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<name>[^?#]*)(?P<rest>.*)", re.S)
_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
_PARAM_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_URI = 16 * 1024
SECRET_PARAMS = frozenset({"accessKey", "clientSecret", "connectionString", "key", "pin", "token"})


@dataclass(frozen=True, slots=True)
class ParsedURI:
    """A parsed ``kms://`` / ``storage://`` URI.  ``params`` values are decoded once."""

    scheme: Literal["kms", "storage"]
    name: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``scheme://name``, for messages (never includes values)."""
        return f"{self.scheme}://{self.name}"

    def require(self, *names: str) -> dict[str, str]:
        """The values of ``names``.  Raises ``KMSConfigError`` naming every parameter that is
        missing or empty, all at once."""
        missing = [n for n in names if not self.params.get(n)]
        if missing:
            raise KMSConfigError(f"{self.label}: missing parameter(s): {', '.join(missing)}")
        return {n: self.params[n] for n in names}

    def optional(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name``, or ``default`` when absent.  Raises ``KMSConfigError`` when
        present but empty (an empty value is almost always a templating mistake)."""
        if name not in self.params:
            return default
        if not self.params[name]:
            raise KMSConfigError(f"{self.label}: parameter {name} is empty")
        return self.params[name]

    def check_known(self, *names: str) -> None:
        """Raises ``KMSConfigError`` naming every parameter not in ``names``."""
        unknown = sorted(set(self.params) - set(names))
        if unknown:
            raise KMSConfigError(f"{self.label}: unknown parameter(s): {', '.join(unknown)}")

    def __repr__(self) -> str:  # values may be secrets: show names only
        return f"ParsedURI({self.label!r}, params={sorted(self.params)!r})"


def parse_uri(uri: str) -> ParsedURI:
    """Parse ``uri``.  Raises ``KMSConfigError`` (never anything else) with a precise message
    that quotes no parameter value."""
    if not isinstance(uri, str):
        raise KMSConfigError("URI must be a string")
    if len(uri) > _MAX_URI:
        raise KMSConfigError(f"URI is longer than {_MAX_URI} characters")
    m = _URI_RE.fullmatch(uri)
    if m is None:
        raise KMSConfigError("URI must look like kms://<name>?... or storage://<name>?...")
    scheme = m["scheme"].lower()
    if scheme not in _SCHEMES:
        raise KMSConfigError("URI scheme must be kms:// or storage://")
    name = _parse_name(scheme, m["name"])
    params = _parse_query(f"{scheme}://{name}", m["rest"])
    return ParsedURI(scheme, name, params)  # type: ignore[arg-type]  # checked above


def _parse_name(scheme: str, raw: str) -> str:
    """The backend name: lowercase letters, digits and dashes; no user, port or path."""
    name = raw[:-1] if raw.endswith("/") else raw  # tolerate ``kms://aws/?...``
    if not name:
        raise KMSConfigError(f"{scheme}:// URI has no backend name")
    if not _NAME_RE.fullmatch(name):
        raise KMSConfigError(
            f"{scheme}:// URI backend name must be lowercase letters, digits and dashes "
            "(no user, port or path)"
        )
    return name


def _parse_query(label: str, rest: str) -> dict[str, str]:
    if "#" in rest:
        raise KMSConfigError(f"{label}: URI must not have a fragment")
    if not rest or rest == "?":
        return {}
    params: dict[str, str] = {}
    for pos, component in enumerate(rest[1:].split("&"), start=1):
        key, value = _parse_component(label, pos, component)
        if key in params:
            raise KMSConfigError(f"{label}: parameter {key} is given more than once")
        params[key] = value
    return params


def _parse_component(label: str, pos: int, component: str) -> tuple[str, str]:
    """One ``name=value`` pair.  Messages identify a bad pair by position, since a pair without
    ``=`` may well be a pasted secret."""
    key, sep, raw = component.partition("=")
    if not sep:
        raise KMSConfigError(f"{label}: query component {pos} is not name=value")
    if not _PARAM_RE.fullmatch(key):
        raise KMSConfigError(f"{label}: query component {pos} has an invalid parameter name")
    return key, _percent_decode(label, key, raw)


def _percent_decode(label: str, key: str, raw: str) -> str:
    """Decode ``+`` and ``%XX`` escapes once (see the module docstring)."""
    if _PERCENT_RE.search(raw):
        raise KMSConfigError(f"{label}: parameter {key} has a malformed %-escape")
    if "+" in raw:
        if key in SECRET_PARAMS:
            raise KMSConfigError(
                f"{label}: parameter {key} has a raw '+', which a URI reads as a space:"
                " write a plus sign as %2B"
            )
        raw = raw.replace("+", " ")
    try:
        data = bytes(_unescape(raw))
        return data.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise KMSConfigError(f"{label}: parameter {key} is not valid UTF-8") from None


def _unescape(raw: str) -> bytearray:
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == "%":
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out += raw[i].encode("utf-8")  # lone surrogates raise UnicodeEncodeError
            i += 1
    return out


def resolve_secret(value: str, *, what: str = "secret") -> Secret:
    """Resolve a secret reference (``env:NAME``, ``file:PATH``, ``literal:VALUE`` or a literal;
    see the module docstring).  ``what`` names the parameter in messages.  Raises
    ``KMSConfigError`` when the variable is unset or the file unreadable; messages never contain
    the secret."""
    if value.startswith("env:"):
        return _from_env(value[4:], what)
    if value.startswith("file:"):
        return _from_file(value[5:], what)
    if value.startswith("literal:"):
        return Secret(value[8:])
    return Secret(value)


def _from_env(name: str, what: str) -> Secret:
    if not name:
        raise KMSConfigError(f"{what}: env: reference has no variable name")
    if name not in os.environ:
        raise KMSConfigError(f"{what}: environment variable {name} is not set")
    return Secret(os.environ[name])


def _from_file(path: str, what: str) -> Secret:
    if not path:
        raise KMSConfigError(f"{what}: file: reference has no path")
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KMSConfigError(f"{what}: cannot read file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise KMSConfigError(f"{what}: file {path} is not UTF-8 text") from None
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return Secret(text[: -len(ending)])
    return Secret(text)
