"""The bounded look at a body before anyone is known.

Schemes that may carry the credential inside the body (``body_credentials``: form-encoded RPC
APIs, token bodies) cannot be told apart, or matched to an account, without reading some of
it.  Before the account is known, the proxy reads at most :data:`DETECT_BYTES` (+1) of a body,
each read under ``Http.ClientTimeout``; a body that ends within that bound is handled whole as
before.  A longer one is read on only once the first bytes (or the query and headers) name a
configured proxy credential of the scheme: :func:`prefix_access_keys` finds the identifiers
they name — the scheme's own parser on the bytes so far, plus the scheme's credential
parameter (``body_credential_param``) in the query, in the complete form pairs of the prefix
or as a JSON string member.  A body whose credential comes later than :data:`DETECT_BYTES` is
refused (400): no unauthenticated client makes the proxy hold more than that.
"""

from __future__ import annotations

import contextlib
import json
import re
from urllib.parse import parse_qsl

from keybroker.errors import RequestTimeout
from keybroker.http.messages import Request
from keybroker.signers import Signer, SigningRequest

__all__ = ["DETECT_BYTES", "prefix_access_keys", "read_prefix"]

#: how much of a body is read before its account is known
DETECT_BYTES = 8 * 1024


async def read_prefix(request: Request, limit: int, timeout: float | None) -> tuple[bytes, bool]:
    """Up to ``limit + 1`` bytes of the body and whether that was all of it (``False``: the
    body goes on past ``limit``).  Each read waits at most ``timeout`` seconds
    (``RequestTimeout``).  ``Expect: 100-continue`` is answered: the bytes are wanted."""
    if not request.body_exists:
        return b"", True
    request.send_continue()
    parts: list[bytes] = []
    size = 0
    content = request.content
    while size <= limit:
        try:
            chunk = await content.read(limit + 1 - size, timeout)
        except TimeoutError:
            raise RequestTimeout(f"the request body stalled for more than {timeout} s") from None
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False


def prefix_access_keys(signer: Signer, signed: SigningRequest) -> set[str]:
    """The credential identifiers (as ``ParsedAuth.access_key`` spells them) that ``signed``
    names in its headers, its query or the first bytes of its body (``signed.body``)."""
    keys: set[str] = set()
    prefix = signed.body or b""
    cut = prefix[: prefix.rfind(b"&") + 1] if b"&" in prefix else b""
    for body in {prefix, cut}:
        trial = signed.copy()
        trial.body = body
        with contextlib.suppress(Exception):  # a parser refusing a cut body is expected
            keys.add(signer.parse(trial).access_key)
    name = signer.body_credential_param
    if name is not None:
        for value in _values(name, signed.query, cut or prefix):
            keys.add(signer.body_credential_id(value))
    keys.discard("")
    return keys


def _values(name: str, query: str, prefix: bytes) -> set[str]:
    """Values of parameter ``name`` in the query, in the complete form pairs of ``prefix``,
    and as a JSON string member of ``prefix``."""
    found = {v for k, v in parse_qsl(query, keep_blank_values=True) if k == name}
    text = prefix.decode("utf-8", "replace")
    found.update(v for k, v in parse_qsl(text, keep_blank_values=True) if k == name)
    member = re.compile(r'"' + re.escape(name) + r'"\s*:\s*("(?:[^"\\]|\\.){0,1024}")')
    for match in member.finditer(text):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(value, str):
            found.add(value)
    return found
