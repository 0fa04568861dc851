"""Keeping a request inside an ``Upstream``'s path prefix.

An endpoint's ``Upstream`` may name a path (``https://gw.internal/aws``): the operator allows
that subtree, not the whole host.  A request path is appended to the prefix as sent, but the
upstream (or a server behind it) may normalise it first: remove dot-segments, decode ``%2e``
and ``%2f``, treat ``\\`` as ``/``, strip ``;parameters`` (``..;``), decode twice.  A path is
refused when *any* of those readings climbs above the prefix, so no server can read it as a
path outside the subtree, whatever normalisation it applies.  Paths that only go down and up
inside the subtree (``a/../b``, an S3 key with a ``..`` segment) stay as they are.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from keybroker.errors import Forbidden

__all__ = ["escapes_root", "join_under_prefix"]

_MAX_DECODES = 4  # %25252e... decoded this often still climbs; more is refused outright
# overlong UTF-8 spellings that old servers decoded to "." and "/"
_OVERLONG = ((b"\xc0\xae", b"."), (b"\xe0\x80\xae", b"."), (b"\xc0\xaf", b"/"), (b"\xc0\x2f", b"/"))
_SEPARATORS = re.compile(rb"[/\\]")


def join_under_prefix(prefix: str, path: str) -> str:
    """``prefix + path``; raises ``Forbidden`` if ``path`` could leave ``prefix``."""
    if not prefix:
        return path
    if escapes_root(path):
        raise Forbidden("the request path leaves the Upstream's path prefix ('..' segments)")
    return prefix + path


def escapes_root(path: str) -> bool:
    """True if some reading of ``path`` (see the module doc) climbs above its first ``/``."""
    raw = path.encode("utf-8", "surrogateescape")
    for _ in range(_MAX_DECODES):
        if _climbs(raw):
            return True
        decoded = unquote_to_bytes(raw)
        if decoded == raw:
            return False
        raw = decoded
    return b"%" in raw or _climbs(raw)


def _climbs(raw: bytes) -> bool:
    for overlong, plain in _OVERLONG:
        raw = raw.replace(overlong, plain)
    depth = 0
    for segment in _SEPARATORS.split(raw):
        name = segment.split(b";", 1)[0].strip(b" \t")
        if not name or name == b".":
            continue
        if name.strip(b".") == b"":  # "..", and "..." which some servers trim to ".."
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False
