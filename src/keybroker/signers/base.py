"""The signer interface every vendor scheme implements.

A signer never does I/O.  The proxy gives it a :class:`SigningRequest` (what the client
signed), and it answers four questions:

* :meth:`Signer.detect` — does this request carry my scheme's signature? (native mode)
* :meth:`Signer.parse` — who signed, when, for which region/service, and how is the body
  covered?  Raises :class:`~keybroker.errors.MalformedSignature` (400) on anything it cannot
  parse; never any other exception for bad input.
* :meth:`Signer.verify` — is the signature right for this credential?  Raises the one opaque
  :class:`~keybroker.errors.SignatureMismatch` (401); comparisons are constant-time.
* :meth:`Signer.resign` — sign the upstream request with the real credential, at ``now``.

The body is never handed over whole unless the signer asks for it with
``ParsedAuth.body is BodyPolicy.BUFFER``; with ``CLAIMED_SHA256`` the proxy streams the body
and aborts the upstream request if the bytes do not hash to ``ParsedAuth.payload_sha256``.

Schemes that carry the credential *inside* the body (form-encoded RPC APIs: UCloud, Alibaba
RPC over POST, Qiniu form bodies) set the class attribute ``body_credentials = True``: the
proxy then reads the body *before* ``detect``/``parse`` and puts it in ``SigningRequest.body``
— at most a few KiB until the account is known (:mod:`keybroker.proxy.bodyprobe`: such a signer
names its credential parameter in ``body_credential_param``, and may map a value found there
to its identifier with ``body_credential_id``), then the rest, bounded by ``MaxBodyBytes``.
``resign`` may replace ``SigningRequest.body`` (e.g. to swap a signature parameter inside a
form body); the proxy sends ``body`` as it is afterwards.

The replay cache keys a request by what its signature *means* (:func:`replay_identity`):
``parse`` puts the signature's bytes — decoded from hex or Base64, so every spelling the parser
accepts gives the same bytes — in ``ParsedAuth.signature``.  A scheme whose identity is not
just its access key and signature may offer the optional member
``replay_identity(req, auth) -> bytes | None``.

Two more optional members, for schemes whose credential is not an access key + secret key:
``credential_fields`` (class attribute: the ``Credential`` fields the config must fill, e.g.
``("client_token", "access_token", "client_secret")`` for Akamai) and ``credential_id(cred)``
(the identifier ``ParsedAuth.access_key`` is compared with; ``cred.access_key`` by default).

Chunk-signed bodies (``ParsedAuth.body is BodyPolicy.STREAMING``, e.g. AWS ``aws-chunked``)
are re-signed chunk by chunk while they stream.  A signer that supports them has the optional
method ``body_transformer(auth, proxy_cred, real_cred, resigned_seed, now)`` returning a
:class:`BodyTransformer` (or ``None`` when the body needs no rewriting): it verifies each chunk
with ``proxy_cred``, chained from the client's seed signature, and re-signs it with
``real_cred``, chained from ``resigned_seed`` (the signature ``resign`` just made).  ``verify``
and ``resign`` of such a signer build the transformer themselves and leave it in
``ParsedAuth.body_transformer``; the forwarder pipes the streamed body through it, sends the
``Content-Length`` that ``resign`` set, and cuts the upstream request, before its last bytes,
when ``feed`` or ``finish`` raises.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from keybroker.credentials import Credential

__all__ = [
    "BodyPolicy",
    "BodyTransformer",
    "Operation",
    "ParsedAuth",
    "Signer",
    "SigningRequest",
    "replay_identity",
]


@dataclass(slots=True)
class SigningRequest:
    """A request as it is (or will be) on the wire.

    ``path`` and ``query`` are raw (percent-encoded exactly as sent); ``host`` is the value of
    the Host header (``name`` or ``name:port``).
    """

    method: str
    host: str
    path: str
    query: str
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    scheme: str = "https"
    #: the whole body, only for ``body_credentials`` schemes (see the module docstring)
    body: bytes | None = None

    def query_pairs(self) -> list[tuple[str, str]]:
        """Decoded ``(name, value)`` pairs of the query, blank values kept."""
        return parse_qsl(self.query, keep_blank_values=True)

    def url(self) -> str:
        q = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.path}{q}"

    def copy(self) -> SigningRequest:
        return SigningRequest(
            self.method,
            self.host,
            self.path,
            self.query,
            CIMultiDict(self.headers),
            self.scheme,
            self.body,
        )


class BodyPolicy(enum.Enum):
    """How a signature covers the body."""

    UNSIGNED = "unsigned"  # the body is not signed (or explicitly UNSIGNED-PAYLOAD)
    # a header claims the body's SHA-256; the proxy checks it while streaming
    CLAIMED_SHA256 = "claimed-sha256"
    BUFFER = "buffer"  # the signer needs the whole body (bounded by the proxy)
    STREAMING = "streaming"  # a chunk-signed stream (aws-chunked); handled by the signer's stream


class BodyTransformer(Protocol):
    """Rewrites a chunk-signed body as it streams; memory stays bounded whatever its size.

    A transformer is single-use: ``feed`` every piece of the body in order, then ``finish``.
    """

    def feed(self, data: bytes) -> bytes:
        """The bytes to send upstream now (possibly empty).  Raises ``SignatureMismatch`` on
        the first chunk that does not verify and ``MalformedSignature`` on broken framing."""
        ...

    def finish(self) -> bytes:
        """The held-back end of the body, once everything verified.  Raises
        ``SignatureMismatch`` (a final chunk, trailer signature or checksum that does not
        match) and ``MalformedSignature`` (a body cut short)."""
        ...


@dataclass(slots=True)
class ParsedAuth:
    """What :meth:`Signer.parse` found in a request, before any verification."""

    access_key: str
    signed_at: datetime | None = None
    region: str | None = None
    service: str | None = None
    body: BodyPolicy = BodyPolicy.BUFFER
    payload_sha256: str | None = None
    in_query: bool = False
    #: the body's SHA-256 (hex) when the proxy spooled a large body instead of handing it
    #: over whole; only for signers with ``accepts_body_sha256 = True``
    body_sha256: str | None = None
    expires: int | None = None  # seconds of validity after signed_at (presigned URLs)
    action: str | None = None
    state: object = None  # scheme-private data carried from parse to verify/resign
    #: set by ``resign`` for a STREAMING body (see the module docstring)
    body_transformer: BodyTransformer | None = None
    #: the signature's bytes (decoded: one value for every accepted spelling); set by
    #: ``parse`` — the replay key is made from it (see :func:`replay_identity`)
    signature: bytes = field(default=b"", repr=False)

    #: the last body :meth:`body_digest` hashed, and its digest
    _digested: tuple[bytes | None, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def body_digest(self, body: bytes | None) -> str:
        """The SHA-256 (hex) of the body the signature covers: the spooled body's
        (:attr:`body_sha256`) or that of ``body``.  Verify and re-sign of one request get the
        very same ``body`` object, so it is hashed once; another object is hashed anew."""
        if self.body_sha256 is not None:
            return self.body_sha256
        done = self._digested
        if done is not None and done[0] is body:
            return done[1]
        digest = hashlib.sha256(body or b"").hexdigest()
        self._digested = (body, digest)
        return digest


def replay_identity(vendor: str, auth: ParsedAuth) -> bytes | None:
    """What a signature means, as bytes: the vendor, the access key whose secret verified it
    and the signature's bytes, each length-prefixed; ``None`` when the scheme left
    ``auth.signature`` empty (the caller then keys on the request's spelling).

    The credential scope, the signed time and everything else the signature covers are
    inside those bytes: a request that differs in any of them has another signature.  Nothing
    the signature does not cover (an unsigned region header, the body of an
    ``UNSIGNED-PAYLOAD`` upload, the spelling of the Authorization value or of the query) may
    enter the identity, or changing it would make a captured request new again."""
    if not auth.signature:
        return None
    out = bytearray()
    for part in (vendor.encode(), auth.access_key.encode("utf-8", "surrogateescape")):
        out += len(part).to_bytes(4, "big") + part
    return bytes(out + len(auth.signature).to_bytes(4, "big") + auth.signature)


@dataclass(frozen=True, slots=True)
class Operation:
    """What the vendor will execute for a verified request, read the way the vendor's service
    reads it: the policy, the replay rule and the audit all decide on this one value.

    ``action`` is the vendor's operation name (``GetObject``, ``DescribeInstances``) or
    ``None`` when the signer cannot classify the request; ``resource`` names what it acts on
    (``bucket/key`` for S3) when known; ``read_only`` is True only when the signer knows the
    operation changes nothing (an unclassified request is never read-only).

    A signer may offer ``operation(req, auth, body) -> Operation`` (optional member); without
    it :func:`keybroker.proxy.checks.request_operation` falls back to generic rules.
    """

    service: str | None
    action: str | None
    resource: str | None = None
    read_only: bool = False


@runtime_checkable
class Signer(Protocol):
    """One vendor signature scheme.  Implementations are stateless and thread-safe."""

    vendor: ClassVar[str]
    #: DNS suffixes of the vendor's public API (lower case, leading dot), e.g. ``.amazonaws.com``
    public_domains: ClassVar[tuple[str, ...]]
    #: customer-controlled hosts under ``public_domains`` (load balancers, API gateways,
    #: websites, ...) that never get a request signed with the real key; patterns where a
    #: leading ``*.`` is one or more labels and any other ``*`` part of a label
    excluded_hosts: ClassVar[tuple[str, ...]]

    def detect(self, req: SigningRequest) -> bool:
        """True when ``req`` carries this scheme's signature (header or query)."""
        ...

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the signature.  Raises ``MalformedSignature``."""
        ...

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Check the signature with ``cred``.  Raises ``SignatureMismatch``.

        ``body`` is the whole body when ``auth.body is BodyPolicy.BUFFER``, else ``None``.
        """
        ...

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Replace the signature in ``req`` (in place) with one made by ``cred`` at ``now``.

        ``req`` is the upstream request: its host is the host really sent to.  Raises
        ``MalformedSignature`` only if ``auth`` cannot be re-expressed.
        """
        ...

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """The vendor's public base URL (``https://host``) for a natively addressed request,
        from the service and region in the signature; ``None`` if there is no rule."""
        ...
