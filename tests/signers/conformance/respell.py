"""Respellings of a signed request that an attacker holding a captured request can make
without the secret: the Authorization value's separators, component order and hex case, Base64
padding and unused bits, the query's order, ``&`` padding and percent-encoding of unreserved
characters.  Each vendor lists (``REPLAY`` in its conformance module) the respellings its parser
must accept; the rest are drawn too, and must either be refused or keep the replay key."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import strategies as st

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.proxy.checks import replay_key
from keybroker.signers.base import SigningRequest

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

keys = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=8)
values = st.text(string.ascii_letters + string.digits + "-_.~", max_size=8)
params = st.dictionaries(keys, values, min_size=2, max_size=4)
secret_keys = st.text(string.ascii_letters + string.digits, min_size=8, max_size=30)


@dataclass
class ReplayCase:
    vendor: str
    req: SigningRequest
    cred: Credential
    body: bytes | None


#: (query, secret key, when) -> a request signed by the vendor's SDK
Maker = Callable[[dict[str, str], str, datetime], ReplayCase]


def key_of(case: ReplayCase, req: SigningRequest) -> bytes | None:
    """The replay key of ``req`` if the vendor's parser accepts it and it verifies."""
    signer = signers.get(case.vendor)
    try:
        auth = signer.parse(req)
        signer.verify(req, auth, case.cred, case.body)
    except (MalformedSignature, SignatureMismatch):
        return None
    return replay_key(signer, case.vendor, req, auth, case.body)


Respell = Callable[[SigningRequest, st.DataObject], SigningRequest]
_HEX_SIG = re.compile(r"(Signature=)([0-9a-f]{40,64})")
_FIELDS = re.compile(r"^(\S+) (.*)$", re.S)


def copy(req: SigningRequest, **changes: object) -> SigningRequest:
    out = req.copy()
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def auth_fields(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """``ALG A=1, B=2, C=3``: components reordered, other comma separators, a trailing one."""
    value = req.headers.get("Authorization", "")
    found = _FIELDS.match(value)
    if not found or "=" not in found.group(2) or ";signature=" in value:
        return req
    parts = [p.strip() for p in re.split(r",\s*", found.group(2)) if p.strip()]
    order = data.draw(st.permutations(parts))
    sep = data.draw(st.sampled_from([",", ", ", ",\t", " , ", ",  "]))
    out = copy(req)
    out.headers["Authorization"] = f"{found.group(1)} {sep.join(order)}"
    return out


def hex_case(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """The signature's hex digits in upper case (header or query)."""
    out = copy(req)
    value = out.headers.get("Authorization")
    if value is not None:
        out.headers["Authorization"] = _HEX_SIG.sub(lambda m: m[1] + m[2].upper(), value)
    out.query = re.sub(r"(Signature=)([0-9a-f]{40,64})", lambda m: m[1] + m[2].upper(), out.query)
    return out


def query_order(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    pieces = [p for p in req.query.split("&") if p]
    return copy(req, query="&".join(data.draw(st.permutations(pieces))))


def query_padding(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    pieces = req.query.split("&")
    padded: list[str] = []
    for piece in pieces:
        padded += [""] * data.draw(st.integers(0, 2)) + [piece]
    return copy(req, query="&".join(padded) + "&" * data.draw(st.integers(0, 2)))


def query_percent(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """Percent-encode some unreserved characters (``A`` -> ``%41``)."""
    chars = list(req.query)
    escaped = {i for m in re.finditer(r"%[0-9A-Fa-f]{2}", req.query) for i in range(*m.span())}
    spots = [i for i, c in enumerate(chars) if c.isalnum() and i not in escaped]
    if not spots:
        return req
    for i in data.draw(st.sets(st.sampled_from(spots), max_size=4)):
        chars[i] = f"%{ord(chars[i]):02X}" if data.draw(st.booleans()) else f"%{ord(chars[i]):02x}"
    return copy(req, query="".join(chars))


def b64_parts(req: SigningRequest) -> tuple[str, str, str] | None:
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    ak, colon, sig = token.partition(":")
    return (scheme, ak, sig) if colon else None


def b64_padding(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """Qiniu's URL-safe Base64 signature with or without its ``=``."""
    parts = b64_parts(req)
    if parts is None:
        return req
    scheme, ak, sig = parts
    out = copy(req)
    padded = sig.rstrip("=") + ("=" if data.draw(st.booleans()) else "")
    out.headers["Authorization"] = f"{scheme} {ak}:{padded}"
    return out


def b64_bits(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """The Base64 signature's last character with its unused bits set: the same bytes."""
    parts = b64_parts(req)
    if parts is None:
        return req
    scheme, ak, sig = parts
    text = sig.rstrip("=")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(text[-1]) | data.draw(st.integers(0, 3))
    out = copy(req)
    out.headers["Authorization"] = f"{scheme} {ak}:{text[:-1]}{alphabet[last]}="
    return out


ALL: list[Respell] = [
    auth_fields,
    hex_case,
    query_order,
    query_padding,
    query_percent,
    b64_padding,
    b64_bits,
]

QUERY: list[Respell] = [query_order, query_padding, query_percent]
