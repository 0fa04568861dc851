"""The SigV4 canonical request's parts, built exactly as botocore and the AWS test suite do.

Query strings are percent-decoded (``+`` stays ``+``: SigV4 never uses form encoding) and
re-encoded with only the RFC 3986 unreserved set kept; paths are encoded once more ("double
encoding") except for services that keep them raw (S3).  Bad input raises
:class:`~keybroker.errors.MalformedSignature` naming the part, never its value.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote_to_bytes

from keybroker.errors import MalformedSignature
from keybroker.signers.base import SigningRequest
from keybroker.signers.encoding import UNRESERVED_PATH

__all__ = [
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "decode_query",
    "encode_component",
]

_UNRESERVED = "-_.~"

# Fast paths.  Each one applies only where the general code provably returns its input (or
# the split pairs) unchanged; any other input takes the general code.
#: only RFC 3986 unreserved characters: encode_component() leaves such text as it is
_PLAIN = re.compile(r"[A-Za-z0-9\-_.~]*")
#: a component that percent-decoding then RFC 3986 encoding gives back unchanged: unreserved
#: characters and upper-case escapes of ASCII bytes outside the unreserved set.  Runs of
#: characters are taken whole and possessively (never given back): matching stays linear.
_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF])"
_ROUND_TRIP = rf"(?:[A-Za-z0-9\-_.~]++|{_ESCAPE})*+"
#: a query whose every name and value (split at the first "=") is such a component
_CANONICAL_QUERY = re.compile(
    rf"{_ROUND_TRIP}(?:={_ROUND_TRIP})?+(?:&{_ROUND_TRIP}(?:={_ROUND_TRIP})?+)*+"
)


def decode_query(raw: str) -> list[tuple[str, str]]:
    """Percent-decode ``raw`` into pairs; ``+`` stays ``+`` (SigV4 never uses form encoding)."""
    if "%" not in raw and raw.isascii():
        # nothing to decode: each component is its own decoding
        return [_split_pair(part) for part in raw.split("&") if part]
    return list(_decoded_pairs(raw))


@functools.lru_cache(maxsize=512)
def _decoded_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    # cached: parse and re-sign of a presigned request decode the same query several times
    pairs = []
    for part in raw.split("&"):
        if part:
            key, _, val = part.partition("=")
            pairs.append((_decode_component(key), _decode_component(val)))
    return tuple(pairs)


def _split_pair(part: str) -> tuple[str, str]:
    key, _, val = part.partition("=")
    return key, val


def _decode_component(text: str) -> str:
    if "%" not in text and text.isascii():
        return text  # nothing to decode
    try:
        return _to_bytes(text, "query string").decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedSignature("query string is not valid UTF-8") from None


def _to_bytes(text: str, what: str) -> bytes:
    """Percent-decoded bytes of ``text`` (undecodable bytes arrive as surrogate escapes)."""
    try:
        return unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise MalformedSignature(f"{what} contains invalid characters") from None


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal; empty segments go too, as AWS services want."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_uri(path: str, *, raw: bool) -> list[str]:
    """Candidate canonical URIs for the path as sent.

    ``raw`` (S3): the path is used as sent, with only bytes illegal in a URI encoded; a second
    candidate re-encodes every segment once, for signers that encode ``+``, ``!`` etc.  Else
    (every other service): dot segments removed and the sent path encoded once more, which is
    the "double encoding" of the AWS docs and of botocore.  Raises ``MalformedSignature``.
    """
    path = path or "/"
    if UNRESERVED_PATH.fullmatch(path):  # both canonical_uri() forms leave such a path as is
        # nothing to encode (nor, for S3, to re-encode)
        return [path if raw else _remove_dot_segments(path)]
    try:
        wire = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise MalformedSignature("request path contains invalid characters") from None
    if not raw:
        return [quote(_remove_dot_segments(path).encode("utf-8", "surrogateescape"), "/~")]
    as_sent = quote(wire, safe="/~%!$&'()*+,;=:@-._")
    reencoded = quote(unquote_to_bytes(wire), safe="/~")
    return [as_sent] if reencoded == as_sent else [as_sent, reencoded]


def canonical_query(raw: str, *, drop_signature: bool = False) -> tuple[str, ...]:
    """Candidate canonical query strings: AWS's (decode, encode RFC 3986, sort) first, and
    botocore's sort of the raw pairs when that differs.  Raises ``MalformedSignature``.

    Cached: parse, verify and re-sign each need it for the same query string."""
    # one cache key per (query, flag), however the caller passes the flag
    return _canonical_query(raw, drop_signature)


@functools.lru_cache(maxsize=512)
def _canonical_query(raw: str, drop_signature: bool) -> tuple[str, ...]:
    if _CANONICAL_QUERY.fullmatch(raw):
        # each name and value already is its canonical encoding
        parts = raw.split("&") if raw else []
        encoded = [_split_pair(part) for part in parts if part]
        # no empty part either: the pairs as sent are the canonical ones
        as_sent_is_spec = len(encoded) == len(parts)
    else:
        encoded = [(encode_component(k), encode_component(v)) for k, v in decode_query(raw)]
        as_sent_is_spec = False
    if drop_signature:
        encoded = [(k, v) for k, v in encoded if k != "X-Amz-Signature"]
    spec = "&".join(f"{k}={v}" for k, v in sorted(encoded))
    if as_sent_is_spec or not raw.isascii():
        return (spec,)
    kept = []
    for part in raw.split("&") if raw else []:
        key, _, val = part.partition("=")
        if not (drop_signature and key == "X-Amz-Signature"):
            kept.append((key, val))
    as_sent = "&".join(f"{k}={v}" for k, v in sorted(kept))
    return (spec,) if as_sent == spec else (spec, as_sent)


def encode_component(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text
    return quote(text.encode("utf-8", "surrogateescape"), safe=_UNRESERVED)


def canonical_headers(req: SigningRequest, names: tuple[str, ...]) -> str | None:
    """``name:value`` lines (values trimmed, inner whitespace collapsed, repeats joined with
    ``,``); ``None`` when a signed header is missing."""
    lines = []
    for name in names:
        values = [req.host] if name == "host" else req.headers.getall(name, [])
        if not values:
            return None
        lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
    return "\n".join(lines) + "\n"


def canonical_request(
    method: str, uri: str, query: str, headers: str, names: tuple[str, ...], payload: str
) -> str:
    return "\n".join([method.upper(), uri, query, headers, ";".join(names), payload])
