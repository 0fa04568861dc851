"""Redaction: what a log line may say about a request, and a last-resort secret scrubber.

Three layers, each enough on its own for the common case:

* :func:`redact_headers` keeps who signed (scheme and access key id / credential scope) and
  drops what proves it (signatures, tokens, cookies);
* :func:`redact_url` masks signature, token and secret query parameters, and URL passwords;
* :class:`SecretRegistry` knows every secret value of the loaded configuration and replaces
  it with ``***`` wherever it still turns up in a finished log line (defence in depth: a
  vendor error message or an exception text may echo a value nobody meant to log).

None of these functions raises on odd input: a log call must never fail a request.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from keybroker.secret import Secret

if TYPE_CHECKING:
    from keybroker.settings import Config

__all__ = [
    "MASK",
    "SECRETS",
    "SecretRegistry",
    "is_secret_name",
    "redact_authorization",
    "redact_headers",
    "redact_text",
    "redact_url",
    "register_config_secrets",
]

MASK = "***"

# Names of headers, query parameters and log fields whose value is a credential.  Matched
# as substrings, so ``X-Acs-Security-Token``, ``client_secret`` or ``X-Ca-Signature`` are
# caught without listing every vendor.  Over-masking (say ``ContinuationToken``) only costs
# a little debugging comfort; under-masking leaks a credential.
_SECRET_NAME = re.compile(
    r"token|secret|passw(or)?d|signature|cookie|api[-_]?key|session|private[-_]?key",
    re.IGNORECASE,
)
# Short names that are credentials but too short to match as substrings safely.
_SECRET_EXACT = frozenset({"sig", "key", "pwd", "x-api-key", "x-amz-security-token"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})

# What may be shown of an Authorization value: a scheme token and an access key id or
# credential scope.  Anything outside these shapes is masked whole.
_SCHEME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}\Z")
_KEY_ID = re.compile(r"[A-Za-z0-9_.\-/+@]{1,256}\Z")
# Parameters of signature schemes that name the signer (never prove it).
_ID_PARAMS = frozenset({"credential", "access"})
# Schemes whose credentials are a bare secret (or base64 of one).
_OPAQUE_SCHEMES = frozenset({"basic", "bearer", "digest", "negotiate", "token", "ntlm"})


def is_secret_name(name: str) -> bool:
    """Is a header / parameter / field called ``name`` expected to carry a secret?"""
    lowered = name.strip().lower()
    return lowered in _SECRET_EXACT or _SECRET_NAME.search(lowered) is not None


def redact_authorization(value: str) -> str:
    """Keep the scheme and the signer's access key id / scope of an Authorization value.

    ``AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, SignedHeaders=...,
    Signature=...`` becomes ``AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request``.
    ``bce-auth-v1/AK/...`` keeps ``bce-auth-v1/AK``; ``QBox AK:sig`` keeps ``QBox AK``;
    Basic, Bearer and unknown shapes keep the scheme only.
    """
    value = value.strip()
    if not value:
        return ""
    if value.lower().startswith("bce-auth-v1/"):
        parts = value.split("/")
        return f"bce-auth-v1/{_key_id(parts[1])}" if len(parts) > 1 else MASK
    scheme, _, rest = value.partition(" ")
    if not _SCHEME.match(scheme):
        return MASK
    if scheme.lower() in _OPAQUE_SCHEMES or not rest.strip():
        return f"{scheme} {MASK}" if rest.strip() else scheme
    kept = _id_params(rest)
    if kept:
        return f"{scheme} {', '.join(kept)}"
    return f"{scheme} {_colon_form(rest)}"


def _id_params(rest: str) -> list[str]:
    """``Name=value`` parameters (``,`` or ``;`` separated) that name the signer."""
    kept = []
    for item in re.split(r"[,;]", rest):
        name, eq, val = item.strip().partition("=")
        if eq and name.strip().lower() in _ID_PARAMS:
            kept.append(f"{name.strip()}={_key_id(val.strip())}")
    return kept


def _colon_form(rest: str) -> str:
    """``AK:signature`` (Qiniu, Azure SharedKey, Wangsu-style) keeps the ``AK`` part."""
    ident, colon, _ = rest.strip().partition(":")
    return f"{ident}:{MASK}" if colon and _KEY_ID.match(ident) else MASK


def _key_id(candidate: str) -> str:
    return candidate if _KEY_ID.match(candidate) else MASK


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, str]:
    """A loggable copy of ``headers``: authorization reduced, credential headers masked.

    Repeated headers (a multidict's items) are joined with ``", "`` under the first
    spelling of the name seen.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        shown = _redact_header(str(name), str(value))
        key = spelling.setdefault(str(name).lower(), str(name))
        out[key] = f"{out[key]}, {shown}" if key in out else shown
    return out


def _redact_header(name: str, value: str) -> str:
    lowered = name.strip().lower()
    if lowered in _AUTH_HEADERS:
        return redact_authorization(value)
    return MASK if is_secret_name(lowered) else value


_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@]*)@")


def redact_url(url: str) -> str:
    """``url`` with credential query parameters and any URL password replaced by ``***``.

    Works on the string as sent (no re-encoding, so the rest stays byte-identical) and
    accepts malformed URLs; parameter names are compared case-insensitively after
    percent-decoding.
    """
    url = _USERINFO.sub(_mask_password, url, count=1)
    head, hash_, fragment = url.partition("#")
    base, question, query = head.partition("?")
    if not question:
        return url
    masked = "&".join(_redact_param(p) for p in query.split("&"))
    return f"{base}?{masked}{hash_}{fragment}"


def _mask_password(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}{':' + MASK if colon else ''}@"


def _redact_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    if eq and is_secret_name(_unquote(name)):
        return f"{name}={MASK}"
    return param


def _unquote(name: str) -> str:
    return unquote_plus(name, errors="replace")


# ``name=value`` inside free text (an echoed URL or Authorization value in an error message).
_INLINE_PARAM = re.compile(
    r"(?i)\b([\w.\-]*(?:token|secret|passw(?:or)?d|signature|api[-_]?key)[\w.\-]*)=[^\s&,;\"']+"
)


def redact_text(text: str) -> str:
    """``text`` with the value of every ``<credential-name>=value`` in it masked.

    For free text (log messages, exception texts) that may quote a signed URL or an
    Authorization header: ``...&X-Amz-Signature=abc&...`` or ``Signature=abc``.
    """
    return _INLINE_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", text)


class SecretRegistry:
    """A set of known secret strings, scrubbed from finished log lines.

    Values shorter than :attr:`MIN_LENGTH` characters are ignored: replacing every ``abc``
    would mangle logs and hide nothing worth hiding.  The configuration refuses credential
    secrets that short (:mod:`keybroker.config.check_credentials`), so every configured
    secret is scrubbed.  Each value is also matched in its
    JSON-escaped spellings, since the log lines are JSON.  Registration rebuilds one compiled
    pattern, a prefix tree of the values (the longest value at a position is removed whole,
    and the cost of a scan hardly grows with the number of values); scrubbing with an empty
    registry is a no-op.  Thread-safe: readers use the last published pattern.
    """

    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, *values: str | Secret | None) -> None:
        """Add secret values (``None`` and short values are skipped)."""
        fresh = {_plain(v) for v in values if v is not None}
        fresh = {v for v in fresh if len(v) >= self.MIN_LENGTH}
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            self._pattern = _compile(self._values)

    def clear(self) -> None:
        """Forget every value (tests; a process that drops its configuration)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled pattern of the registered values; a new object after each change,
        so callers may cache what they derive from it."""
        return self._pattern

    def scrub(self, text: str) -> str:
        """``text`` with every registered value replaced by ``***``.

        Repeats until nothing matches: a replacement can splice text into a new occurrence
        (``a***b`` around a masked value); each pass shortens the text, so this ends.
        """
        pattern = self._pattern
        if pattern is None:
            return text
        replaced = 1
        while replaced:
            text, replaced = pattern.subn(MASK, text)
        return text


def _plain(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def _compile(values: set[str]) -> re.Pattern[str] | None:
    spellings = set()
    for value in values:
        spellings.add(value)
        spellings.add(json.dumps(value)[1:-1])
        spellings.add(json.dumps(value, ensure_ascii=False)[1:-1])
    if not spellings:
        return None
    return re.compile(_trie_pattern(spellings))


def _trie_pattern(values: set[str]) -> str:
    """One pattern matching exactly ``values``, shaped as a prefix tree (``ab(?:c|d)`` for
    ``abc``, ``abd``): the regex engine then tests each character of the line against the
    branches of one node instead of against every value, so scrubbing costs about the same
    with 4 or 400 secrets.  At each node longer continuations are tried before the value
    ending there, so the longest value starting at a position is removed whole, as with an
    alternation of the values sorted longest first."""
    root: dict[str, Any] = {}
    for value in values:
        node = root
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}  # a value ends here
    return _node_pattern(root)


def _node_pattern(node: dict[str, Any]) -> str:
    ends = "" in node
    branches = []
    for char, child in sorted(node.items()):
        if char:
            # A chain of single children is written as one literal run.
            run = [char]
            while len(child) == 1 and "" not in child:
                ((char, child),) = child.items()
                run.append(char)
            branches.append(re.escape("".join(run)) + _node_pattern(child))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends:
        return f"(?:{body})?"
    return body


SECRETS = SecretRegistry()
"""The process-wide registry the log formatter uses by default."""


def register_config_secrets(config: Config, registry: SecretRegistry = SECRETS) -> None:
    """Register every secret of every endpoint (proxy, additional proxy and real
    credentials) of ``config``.

    Call on each load and reload; values of an older configuration stay registered, since
    they may still sit in requests in flight.
    """
    for endpoint in config.endpoints:
        extra = [v for cred in endpoint.additional_proxies for v in cred.secrets()]
        registry.register(*endpoint.proxy.secrets(), *endpoint.real.secrets(), *extra)
