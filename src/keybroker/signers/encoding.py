"""Percent-encoding that several signers share: RFC 3986 query strings and paths.

Queries are decoded at the byte level, so two different wire queries never share a canonical
form.  Each function has a fast path for text the general code would give back unchanged.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

__all__ = ["UNRESERVED_PATH", "decode_query", "encode_unreserved", "segment_encoded_uri"]

#: Bytes that ``encode_unreserved`` leaves as they are.
_UNRESERVED_BYTES = re.compile(rb"[A-Za-z0-9\-_.~]*")
#: Unreserved characters and ``/``: a path that ``segment_encoded_uri`` (and SigV4's
#: canonical URI) leaves as it is.
UNRESERVED_PATH = re.compile(r"[A-Za-z0-9\-_.~/]*")


def encode_unreserved(raw: bytes) -> str:
    """Percent-encode all but the RFC 3986 unreserved set (``A-Z a-z 0-9 - _ . ~``)."""
    if _UNRESERVED_BYTES.fullmatch(raw):
        return raw.decode("ascii")
    # With safe="" quote() keeps exactly that set.
    return quote(raw, safe="")


def decode_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    """``(name, value)`` of each non-empty ``&`` part, ``+`` read as a space.

    Decoded at the byte level so two different wire queries never share a canonical form
    (no folding of invalid UTF-8 into U+FFFD).
    """
    if raw_query.isascii() and "%" not in raw_query and "+" not in raw_query:
        # nothing to decode: each name and value is its own decoding
        return [_ascii_pair(part) for part in raw_query.split("&") if part]
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append(
                (
                    unquote_to_bytes(name.replace("+", " ")),
                    unquote_to_bytes(value.replace("+", " ")),
                )
            )
    return pairs


def _ascii_pair(part: str) -> tuple[bytes, bytes]:
    name, _, value = part.partition("=")
    return name.encode("ascii"), value.encode("ascii")


def segment_encoded_uri(raw_path: str) -> str:
    """The path with each ``/``-separated segment decoded and re-encoded (``%2F`` inside a
    segment stays encoded); ``/`` for an empty path."""
    if not raw_path:
        return "/"
    if UNRESERVED_PATH.fullmatch(raw_path):
        return raw_path  # no segment changes
    return "/".join(encode_unreserved(unquote_to_bytes(seg)) for seg in raw_path.split("/"))
