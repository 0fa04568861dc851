"""The facts a vendor gives the signer conformance suite (``tests/signers/test_conformance.py``).

A vendor module (``conformance/<vendor>.py``) states, for each way its clients sign (a
:class:`Form`): how to build a request signed by the vendor's own SDK or published sample,
which signed parts can be tampered with, which credentials re-sign it and which garbage its
parser must refuse; and its known-answer :class:`Vector` s, read from ``tests/vectors/``.  The
suite runs the same checks over every vendor, so a property is written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import ParsedAuth, Signer, SigningRequest

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
#: the instant every re-signing property signs at
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Signed:
    """A request as the client sent it, the credential that signed it and its body."""

    req: SigningRequest
    cred: Credential
    body: bytes | None = None

    @property
    def payload(self) -> bytes | None:
        """The body the signer is handed: the request's own when it carries one (schemes with
        the credential in the body), else :attr:`body`."""
        return self.req.body if self.req.body is not None else self.body

    def copy(self, **changes: Any) -> Signed:
        return replace(self, req=self.req.copy(), **changes)


#: a change to one signed part: the changed requests (none when the part is absent)
Tamper = Callable[[Signed, st.DataObject], list[Signed]]


def with_secret(cred: Credential, secret: str) -> Credential:
    """``cred`` with another secret (the default: access key + secret key schemes)."""
    return Credential(cred.access_key, Secret(secret), cred.access_token)


def keys(
    access_key: str,
    secrets: st.SearchStrategy[str],
    tokens: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[Credential]:
    """Credentials of ``access_key`` with drawn secrets (and session tokens)."""
    return st.builds(
        lambda sk, t: Credential(access_key, Secret(sk), Secret(t) if t else None),
        secrets,
        tokens if tokens is not None else st.none(),
    )


def with_access_key(cred: Credential) -> Credential:
    """``cred`` under another access key, with the same secret."""
    return Credential(cred.access_key + "x", cred.secret_key, cred.access_token)


def credential_id(signer: Signer, cred: Credential) -> str:
    """The identifier ``ParsedAuth.access_key`` names for ``cred``."""
    ident = getattr(signer, "credential_id", None)
    return ident(cred) if ident is not None else cred.access_key  # type: ignore[no-any-return]


def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Garbage:
    """Arbitrary input the parser must refuse with ``MalformedSignature`` (or parse, and then
    fail to verify with ``SignatureMismatch``): never another exception."""

    requests: st.SearchStrategy[SigningRequest]
    examples: int = 300
    #: a request that parsed must also re-sign, without raising
    resign: bool = False
    #: text no error message may show (a signature the garbage carries)
    never_shown: str = ""


@dataclass(frozen=True)
class Form:
    """One way a vendor's clients sign requests."""

    name: str
    vendor: str
    #: a request signed by the vendor's SDK (or published sample) with a drawn credential
    signed: st.SearchStrategy[Signed]
    #: real credentials to re-sign with (another access key than the signed one)
    reals: st.SearchStrategy[Credential]
    #: the secrets ``signed`` draws from (another one must not verify)
    secrets: st.SearchStrategy[str]
    #: each signed part, changed: the signature must no longer verify
    tampers: Mapping[str, Tamper]
    garbage: Mapping[str, Garbage]
    #: tampers after which the parser may refuse the request as malformed
    refusable: frozenset[str] = frozenset()
    with_secret: Callable[[Credential, str], Credential] = with_secret
    #: the credential under another identifier with the same secret (``None``: the secret is
    #: the identifier)
    other_key: Callable[[Credential], Credential] | None = with_access_key
    #: vendor facts checked once an SDK-signed request verified: (signed, parsed)
    on_verified: Callable[[Signed, ParsedAuth], None] = _nothing
    #: vendor facts checked once re-signed: (signed, re-signed request, parsed, real
    #: credential, the instant it was re-signed at)
    on_resigned: Callable[[Signed, SigningRequest, ParsedAuth, Credential, datetime], None] = (
        _nothing
    )
    #: the instants to re-sign at
    nows: st.SearchStrategy[datetime] = field(default_factory=lambda: st.just(NOW))
    #: the host the request is forwarded to (re-signed for), when not its own
    upstream_host: str | None = None
    #: whether ``detect`` must claim every SDK-signed request
    detected: bool = True
    #: the other vendors whose ``detect`` claims such a request too (the same wire format)
    also_detected_by: frozenset[str] = frozenset()
    examples: int = 60

    @property
    def signer(self) -> Signer:
        return signers.get(self.vendor)


@dataclass(frozen=True)
class Vector:
    """A known answer: a request signed by the SDK or the documentation, kept in a data file."""

    vendor: str
    name: str
    req: SigningRequest
    cred: Credential
    body: bytes | None
    #: the ``ParsedAuth`` fields the vector pins
    parsed: Mapping[str, object]
    #: where re-signing wrote the signature, and what it must be; ``None``: not re-signed
    resigned: Callable[[SigningRequest], object] | None
    expected: object = None
    #: the instant to re-sign at; ``None``: the signed time the parser read
    now: datetime | None = None
    signer: Signer | None = None
    #: the vector's credential with another secret
    wrong: Credential | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def the_signer(self) -> Signer:
        return self.signer if self.signer is not None else signers.get(self.vendor)

    @property
    def wrong_cred(self) -> Credential:
        if self.wrong is not None:
            return self.wrong
        c = self.cred
        return Credential(c.access_key, Secret(c.secret_key.reveal() + "x"), c.access_token)


def load(vendor: str, name: str) -> Any:
    return json.loads((VECTORS / vendor / name).read_text(encoding="utf-8"))


def case_request(case: dict[str, Any], *, with_body: bool = False) -> SigningRequest:
    """The ``request`` of a vector file's case (the shape most vendors' files share)."""
    r = case["request"]
    body = r.get("body")
    return SigningRequest(
        r["method"],
        r["host"],
        r["path"],
        r["query"],
        _headers(r["headers"]),
        body=body.encode() if with_body and body else None,
    )


def _headers(raw: Any) -> Any:
    from multidict import CIMultiDict

    return CIMultiDict(raw)


def case_cred(case: dict[str, Any]) -> Credential:
    c = case["credential"]
    token = c.get("session_token")
    return Credential(c["access_key"], Secret(c["secret_key"]), Secret(token) if token else None)


def case_body(case: dict[str, Any]) -> bytes | None:
    body = case["request"].get("body")
    return None if body is None else str(body).encode()


def flip(raw: bytes, data: st.DataObject) -> bytes:
    """``raw`` with one byte changed (``b"x"`` for an empty one)."""
    if not raw:
        return b"x"
    i = data.draw(st.integers(0, len(raw) - 1))
    return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]


def changed(signed: Signed, **parts: object) -> list[Signed]:
    """``signed`` with request attributes replaced (``host=...``, ``path=...``)."""
    out = signed.copy()
    for name, value in parts.items():
        setattr(out.req, name, value)
    return [out]


def header(name: str, value: str) -> Tamper:
    """A tamper setting header ``name`` to ``value``."""

    def tamper(signed: Signed, data: st.DataObject) -> list[Signed]:
        out = signed.copy()
        out.req.headers[name] = value
        return [out]

    return tamper


def body_flip(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One byte of the body changed (the request's own body when it carries one)."""
    if signed.req.body is not None:
        out = signed.copy()
        out.req.body = flip(signed.req.body, data)
        return [out]
    return [signed.copy(body=flip(signed.body or b"", data))]


def path_append(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, path=signed.req.path + "x")


def host_append(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, host=signed.req.host + "x")


def query_mark(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One query pair with ``!`` appended (nothing when the query is empty)."""
    pieces = signed.req.query.split("&")
    if not signed.req.query:
        return []
    i = data.draw(st.integers(0, len(pieces) - 1))
    return changed(
        signed, query="&".join(p + ("!" if n == i else "") for n, p in enumerate(pieces))
    )


def method_swap(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, method="PATCH" if signed.req.method != "PATCH" else "GET")


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
#: secrets as any text (the SDKs sign UTF-8)
any_secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_.",
    min_size=1,
    max_size=40,
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
