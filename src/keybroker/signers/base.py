"""The signer interface every vendor scheme implements, and the defaults it starts from.

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

Everything else a scheme may say about itself — where its credential travels, which fields
it needs, how a request maps to an operation, how its SDKs read an error — is a member of
:class:`Signer` too, with its default in :class:`SignerBase`, which every vendor signer
subclasses: the proxy reads each member directly and never asks whether it exists.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.signers._read_actions import METHOD_OVERRIDES, reads_only

__all__ = [
    "BodyPolicy",
    "BodyTransformer",
    "ErrorAnswer",
    "Operation",
    "ParsedAuth",
    "Resigned",
    "Signer",
    "SignerBase",
    "SigningRequest",
    "json_error",
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


@dataclass(frozen=True, slots=True)
class ParsedAuth:
    """What :meth:`Signer.parse` found in a request, before any verification: one immutable
    value that verify, the checks, re-signing and forwarding all read.  A step that knows
    more (the proxy, having spooled the body, its hash) makes a new value with
    :func:`dataclasses.replace`."""

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
    #: the signature's bytes (decoded: one value for every accepted spelling); set by
    #: ``parse`` — the replay key is made from it (see :func:`replay_identity`)
    signature: bytes = field(default=b"", repr=False)

    #: the last body :meth:`body_digest` hashed, and its digest (a cache, not part of the value)
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
        object.__setattr__(self, "_digested", (body, digest))  # the cache only
        return digest


@dataclass(frozen=True, slots=True)
class Resigned:
    """What re-signing adds for forwarding besides the re-signed request: the signature the
    chunks of a chunk-signed body chain from (:meth:`Signer.body_transformer`)."""

    seed_signature: str


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

    :meth:`Signer.operation` makes it (:meth:`SignerBase.operation`: generic rules).
    """

    service: str | None
    action: str | None
    resource: str | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error answer in a vendor's own shape: what its SDKs parse (native mode)."""

    content_type: str
    body: bytes
    #: headers the vendor's answers carry besides the proxy's own (request ids, error type)
    headers: dict[str, str] = field(default_factory=dict)


def json_error(payload: object) -> ErrorAnswer:
    """``payload`` as an ``application/json`` error answer."""
    return ErrorAnswer("application/json", json.dumps(payload).encode())


@runtime_checkable
class Signer(Protocol):
    """One vendor signature scheme.  Implementations are stateless and thread-safe.

    Every member without a default here has one in :class:`SignerBase`.
    """

    vendor: ClassVar[str]
    #: DNS suffixes of the vendor's public API (lower case, leading dot), e.g. ``.amazonaws.com``
    public_domains: ClassVar[tuple[str, ...]]
    #: customer-controlled hosts under ``public_domains`` (load balancers, API gateways,
    #: websites, ...) that never get a request signed with the real key; patterns where a
    #: leading ``*.`` is one or more labels and any other ``*`` part of a label
    excluded_hosts: ClassVar[tuple[str, ...]]
    #: the :class:`~keybroker.credentials.Credential` fields the config must fill, e.g.
    #: ``("client_token", "access_token", "client_secret")`` for Akamai
    credential_fields: ClassVar[tuple[str, ...]]
    #: the credential may travel *inside* the body (form-encoded RPC APIs: UCloud, Alibaba RPC
    #: over POST, Tencent, Baishan): the proxy reads the body *before* ``detect``/``parse`` and
    #: puts it in ``SigningRequest.body`` — at most a few KiB until the account is known
    #: (:mod:`keybroker.proxy.bodyprobe`), then the rest, bounded by ``MaxBodyBytes``; such
    #: schemes are detected after every other.  ``resign`` may replace ``SigningRequest.body``
    #: (e.g. to swap a signature parameter inside a form body); the proxy sends it as it is.
    body_credentials: ClassVar[bool]
    #: the query or form parameter a ``body_credentials`` scheme names its credential in,
    #: looked for in a body's first bytes (``None``: only ``parse`` finds it)
    body_credential_param: ClassVar[str | None]
    #: a large body may be spooled (hashed into a temporary file) instead of handed over
    #: whole: ``verify``/``resign`` then read ``ParsedAuth.body_sha256``
    accepts_body_sha256: ClassVar[bool]
    #: how the vendor's access key ids begin (its SDKs may check it): ``keybroker init``
    #: makes proxy access keys that look the same
    access_key_prefix: ClassVar[str]

    def detect(self, req: SigningRequest) -> bool:
        """True when ``req`` carries this scheme's signature (header or query).  Raises
        nothing."""
        ...

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse the signature.  Raises ``MalformedSignature``, and nothing else for bad input.

        ``ParsedAuth.signature`` gets the signature's bytes, decoded from hex or Base64, so
        every spelling the parser accepts gives the same bytes (see :meth:`replay_identity`).
        """
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
    ) -> Resigned | None:
        """Replace the signature in ``req`` (in place) with one made by ``cred`` at ``now``;
        return what forwarding needs besides ``req`` — for a STREAMING body the new seed
        signature its chunks chain from (see :meth:`body_transformer`) — or ``None``.

        ``req`` is the upstream request: its host is the host really sent to.  Raises
        ``MalformedSignature`` only if ``auth`` cannot be re-expressed, ``ValueError`` for a
        naive ``now``.
        """
        ...

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """The vendor's public base URL (``https://host``) for a natively addressed request,
        from the service and region in the signature; ``None`` if there is no rule.  Raises
        nothing."""
        ...

    def credential_id(self, cred: Credential) -> str:
        """The identifier ``ParsedAuth.access_key`` is compared with (the access key id by
        default; Akamai's client token).  Raises nothing."""
        ...

    def body_credential_id(self, value: str) -> str:
        """The identifier (as :meth:`credential_id` spells it) of a value found in
        ``body_credential_param`` (the value itself by default).  Raises nothing."""
        ...

    def replay_identity(self, req: SigningRequest, auth: ParsedAuth) -> bytes | None:
        """What the signature of a verified request means, as bytes: the replay cache's key
        (by default :func:`replay_identity` of the vendor code and ``auth``); ``None`` keys on
        the request's spelling.  Raises nothing."""
        ...

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """What the vendor will execute for ``req`` (verified; its host is the one the vendor
        sees), read where the vendor reads it.  Raises ``MalformedRequest`` for a request
        naming two operations.  By default: the action ``parse`` read, read-only by
        :func:`~keybroker.signers._read_actions.reads_only` unless a method override header
        is present."""
        ...

    def body_transformer(
        self,
        auth: ParsedAuth,
        proxy_cred: Credential,
        real_cred: Credential,
        resigned_seed: str,
        now: datetime,
    ) -> BodyTransformer | None:
        """The re-signer of a chunk-signed body (``ParsedAuth.body is BodyPolicy.STREAMING``,
        e.g. AWS ``aws-chunked``), or ``None`` when the body needs no rewriting (the default:
        a scheme without chunk signatures).  It verifies each chunk with ``proxy_cred``,
        chained from the client's seed signature, and re-signs it with ``real_cred``, chained
        from ``resigned_seed`` (``Resigned.seed_signature``, made by ``resign`` at the same
        ``now``).  The proxy asks for it after ``resign``; the forwarder pipes the
        streamed body through it, sends the ``Content-Length`` that ``resign`` set, and cuts
        the upstream request, before its last bytes, when ``feed`` or ``finish`` raises.
        Raises ``ValueError`` for a naive ``now``."""
        ...

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The proxy's refusal (``code``, ``message``, ``request_id``) in the shape the
        vendor's SDKs parse, for a natively addressed request of ``service`` whose headers
        (names in lower case) are ``headers``; ``None`` (the default): key-proxy's JSON.
        Raises nothing."""
        ...

    def prepare(self) -> None:
        """Load what the scheme reads on every request (tables, models) now, so that the
        first request of a freshly started worker does not pay for it.  The proxy calls it
        for the vendors of its accounts before it listens.  Raises nothing."""
        ...


class SignerBase:
    """The defaults of every optional :class:`Signer` member; each vendor signer subclasses
    it and overrides what its scheme does differently."""

    excluded_hosts: ClassVar[tuple[str, ...]] = ()
    credential_fields: ClassVar[tuple[str, ...]] = ("access_key", "secret_key")
    body_credentials: ClassVar[bool] = False
    body_credential_param: ClassVar[str | None] = None
    accepts_body_sha256: ClassVar[bool] = False
    access_key_prefix: ClassVar[str] = "KBAK"
    vendor: ClassVar[str]

    def credential_id(self, cred: Credential) -> str:
        return cred.access_key

    def body_credential_id(self, value: str) -> str:
        return value

    def replay_identity(self, req: SigningRequest, auth: ParsedAuth) -> bytes | None:
        return replay_identity(self.vendor, auth)

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        # REST vendors without an action name: the method decides, unless the request asks
        # for another one (some REST gateways honour a method override)
        action = auth.action
        read = reads_only(action, req.method) and not any(
            name in req.headers for name in METHOD_OVERRIDES
        )
        return Operation(auth.service, action, None, read)

    def body_transformer(
        self,
        auth: ParsedAuth,
        proxy_cred: Credential,
        real_cred: Credential,
        resigned_seed: str,
        now: datetime,
    ) -> BodyTransformer | None:
        return None

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        return None

    def prepare(self) -> None:
        return None
