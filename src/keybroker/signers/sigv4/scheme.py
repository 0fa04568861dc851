"""The Signature Version 4 core (``AWS4-HMAC-SHA256``), shared by every SigV4-style vendor.

:class:`SigV4Scheme` implements the whole :class:`~keybroker.signers.base.Signer` protocol
except ``native_upstream``; a vendor module subclasses it, names its vendor code and public
domains, and says which services keep the path raw (S3 does).  The canonical request is built
exactly as botocore's ``SigV4Auth``/``S3SigV4Auth`` and the AWS signing test suite expect::

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
    signed header names \\n payload hash

Chunked uploads (``x-amz-content-sha256: STREAMING-...``) are re-signed in two steps: ``resign``
signs the headers (the seed), and :meth:`SigV4Scheme.body_transformer` re-signs the chunks as
they stream (see :mod:`keybroker.signers.sigv4.chunked`).

Parsing errors raise :class:`~keybroker.errors.MalformedSignature` with a message that names the
faulty field, never its value; a wrong signature raises the opaque
:class:`~keybroker.errors.SignatureMismatch`.

The parts live beside it: the ``Authorization`` header, the request time and
:class:`SigV4State` in :mod:`keybroker.signers.sigv4.parse`, presigned URLs in
:mod:`keybroker.signers.sigv4.presign`, signing keys and signatures in
:mod:`keybroker.signers.sigv4.keys`, the canonical request in
:mod:`keybroker.signers.sigv4.canonical`, AWS's error answers in
:mod:`keybroker.signers.sigv4.errors`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from email.utils import formatdate
from typing import ClassVar

from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import (
    BodyPolicy,
    BodyTransformer,
    ErrorAnswer,
    ParsedAuth,
    Resigned,
    SignerBase,
    SigningRequest,
)
from keybroker.signers.common import compact_time
from keybroker.signers.sigv4 import chunked
from keybroker.signers.sigv4.canonical import (
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    decode_query,
    encode_component,
)
from keybroker.signers.sigv4.errors import aws_error
from keybroker.signers.sigv4.keys import signature, signing_key
from keybroker.signers.sigv4.parse import (
    ALGORITHM,
    HEX64,
    STREAMING_SIGNED,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    SigV4State,
    check_ascii_headers,
    parse_authorization,
    parse_scope,
    parse_signature,
    parse_signed_headers,
    request_time,
    streaming_state,
)
from keybroker.signers.sigv4.presign import parse_query_auth, resign_query

__all__ = ["SigV4Scheme"]

# -- the scheme --------------------------------------------------------------------------------


class SigV4Scheme(SignerBase):
    """A SigV4 signer; subclasses set ``vendor``, ``public_domains`` and ``raw_path_services``
    and implement ``native_upstream``."""

    vendor: ClassVar[str]
    public_domains: ClassVar[tuple[str, ...]]
    algorithm: ClassVar[str] = ALGORITHM
    key_prefix: ClassVar[str] = "AWS4"
    #: services whose canonical URI is the path as sent (S3 and its relatives)
    raw_path_services: ClassVar[frozenset[str]] = frozenset()
    #: a large body may be spooled: verify/resign then use ``ParsedAuth.body_sha256``
    accepts_body_sha256: ClassVar[bool] = True

    # detect / parse ------------------------------------------------------------------------

    def detect(self, req: SigningRequest) -> bool:
        """True for an ``Authorization: AWS4-HMAC-SHA256 ...`` or a presigned query."""
        auth = req.headers.get("Authorization", "").lstrip()
        if auth.startswith(self.algorithm + " "):
            return True
        return "X-Amz-Algorithm=" in req.query and any(
            k == "X-Amz-Algorithm" and v == self.algorithm for k, v in req.query_pairs()
        )

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Parse header or query authentication.  Raises ``MalformedSignature``."""
        if "Authorization" in req.headers:
            auth = self._parse_header_auth(req)
        elif "X-Amz-Algorithm" in dict(decode_query(req.query)):
            auth = parse_query_auth(self, req)
        else:
            raise MalformedSignature("request has neither an Authorization header nor X-Amz-*")
        state = _state(auth)
        check_ascii_headers(req, state.signed_headers)
        if auth.body is BodyPolicy.STREAMING:
            auth = replace(auth, state=streaming_state(req, auth, state))
        # fail here, with a precise message, rather than later in verify
        canonical_uri(req.path, raw=self.is_raw_path(auth.service or ""))
        canonical_query(req.query, drop_signature=auth.in_query)  # the entry verify uses
        return auth

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal in AWS's shape for ``service`` (:func:`.errors.aws_error`)."""
        return aws_error(service, headers, code, message, request_id)

    def is_raw_path(self, service: str) -> bool:
        return service in self.raw_path_services

    def _parse_header_auth(self, req: SigningRequest) -> ParsedAuth:
        values = req.headers.getall("Authorization")
        if len(values) != 1:
            raise MalformedSignature("request has more than one Authorization header")
        parts = parse_authorization(values[0], self.algorithm)
        date_header, timestamp, signed_at = request_time(req.headers)
        access_key, region, service = parse_scope(parts["Credential"], timestamp, "aws4_request")
        names = parse_signed_headers(parts["SignedHeaders"], in_query=False)
        sig = parse_signature(parts["Signature"])
        policy, sha, line = self.payload(req.headers, service, in_query=False)
        state = SigV4State(timestamp, date_header, names, line, sig)
        return ParsedAuth(
            access_key,
            signed_at,
            region,
            service,
            body=policy,
            payload_sha256=sha,
            in_query=False,
            state=state,
            signature=bytes.fromhex(sig),
        )

    def payload(
        self, headers: CIMultiDict[str], service: str, *, in_query: bool
    ) -> tuple[BodyPolicy, str | None, str | None]:
        """(body policy, claimed sha256, payload line) from ``x-amz-content-sha256``."""
        values = headers.getall("x-amz-content-sha256", [])
        if len(values) > 1:
            raise MalformedSignature("x-amz-content-sha256 is repeated")
        if not values:
            if in_query and self.is_raw_path(service):
                # S3 presigned URLs never cover the body (botocore's S3SigV4QueryAuth)
                return BodyPolicy.UNSIGNED, None, UNSIGNED_PAYLOAD
            return BodyPolicy.BUFFER, None, None
        line = values[0].strip()
        if HEX64.fullmatch(line):
            return BodyPolicy.CLAIMED_SHA256, line.lower(), line
        if line == UNSIGNED_PAYLOAD:
            return BodyPolicy.UNSIGNED, None, line
        if line in STREAMING_SIGNED or line == STREAMING_UNSIGNED_TRAILER:
            return BodyPolicy.STREAMING, None, line
        raise MalformedSignature("x-amz-content-sha256 must be a hex SHA-256 or a payload marker")

    # verify --------------------------------------------------------------------------------

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch``."""
        state = _state(auth)
        if not hmac.compare_digest(cred.access_key.encode(), auth.access_key.encode()):
            raise SignatureMismatch()
        self._check_token(req, auth, cred)
        headers = canonical_headers(req, state.signed_headers)
        if headers is None:
            raise SignatureMismatch()
        payload = state.payload_line or auth.body_digest(body)
        key = self._key(cred.secret_key, auth, state.timestamp)
        scope = self.scope(auth, state.timestamp)
        matched = False
        for uri in canonical_uri(req.path, raw=self.is_raw_path(auth.service or "")):
            for query in canonical_query(req.query, drop_signature=auth.in_query):
                creq = canonical_request(
                    req.method, uri, query, headers, state.signed_headers, payload
                )
                expected = signature(key, self.algorithm, state.timestamp, scope, creq)
                # no early exit: every candidate costs the same whichever one matches
                matched |= hmac.compare_digest(expected, state.signature)
        if not matched:
            raise SignatureMismatch()

    def _check_token(self, req: SigningRequest, auth: ParsedAuth, cred: Credential) -> None:
        """When the proxy credential has a session token, the request must carry it."""
        if cred.access_token is None:
            return
        if auth.in_query:
            sent = dict(decode_query(req.query)).get("X-Amz-Security-Token", "")
        else:
            sent = req.headers.get("X-Amz-Security-Token", "")
        if not hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), cred.access_token.reveal_bytes()
        ):
            raise SignatureMismatch()

    def _key(self, secret: Secret, auth: ParsedAuth, timestamp: str) -> bytes:
        region, service = auth.region or "", auth.service or ""
        return signing_key(secret, timestamp[:8], region, service, prefix=self.key_prefix)

    def scope(self, auth: ParsedAuth, timestamp: str) -> str:
        """The credential scope (``date/region/service/aws4_request``) at ``timestamp``."""
        return f"{timestamp[:8]}/{auth.region}/{auth.service}/aws4_request"

    # resign --------------------------------------------------------------------------------

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> Resigned | None:
        """Sign ``req`` in place with ``cred`` at ``now``, in the form the client used.

        For an aws-chunked body the headers (seed) are signed here, with the
        ``Content-Length`` of the re-framed body, and the new seed is returned: the chunks
        are re-signed from it (:meth:`body_transformer`).  Raises ``ValueError`` for a naive
        ``now``.
        """
        state = _state(auth)
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = compact_time(now)
        payload = state.payload_line or auth.body_digest(body)
        streaming = auth.body is BodyPolicy.STREAMING
        if streaming and state.payload_line in STREAMING_SIGNED and "Content-Length" in req.headers:
            length = chunked.encoded_length(state.decoded_length or 0, state.trailers)
            req.headers["Content-Length"] = str(length)
        if auth.in_query:
            seed = resign_query(self, req, auth, state, cred, timestamp, payload)
        else:
            seed = self._resign_header(req, auth, state, cred, now, timestamp, payload)
        return Resigned(seed) if streaming else None

    def body_transformer(
        self,
        auth: ParsedAuth,
        proxy_cred: Credential,
        real_cred: Credential,
        resigned_seed: str,
        now: datetime,
    ) -> BodyTransformer | None:
        """The re-signer of an aws-chunked body (``None`` for any other body): chunks are
        verified with ``proxy_cred`` from the client's seed and re-signed with ``real_cred``
        from ``resigned_seed``, made at ``now``.  Raises ``ValueError`` for a naive ``now``.
        """
        state = _state(auth)
        if auth.body is not BodyPolicy.STREAMING:
            return None
        if state.payload_line == STREAMING_UNSIGNED_TRAILER:
            return chunked.UnsignedTrailerTransformer(state.trailers, state.decoded_length)
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = compact_time(now)
        incoming = self._chain(proxy_cred, auth, state.timestamp, state.signature)
        outgoing = self._chain(real_cred, auth, timestamp, resigned_seed)
        declared = state.decoded_length or 0
        return chunked.SignedChunkTransformer(incoming, outgoing, state.trailers, declared)

    def _chain(
        self, cred: Credential, auth: ParsedAuth, timestamp: str, seed: str
    ) -> chunked.ChunkChain:
        key = self._key(cred.secret_key, auth, timestamp)
        return chunked.ChunkChain(key, self.algorithm, timestamp, self.scope(auth, timestamp), seed)

    def _resign_header(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        state: SigV4State,
        cred: Credential,
        now: datetime,
        timestamp: str,
        payload: str,
    ) -> str:
        if state.date_header == "date":
            # keep the client's style ("GMT" or botocore's "-0000"): both mean UTC
            gmt = req.headers.get("Date", "").rstrip().endswith("GMT")
            req.headers["Date"] = formatdate(now.timestamp(), usegmt=gmt)
        else:
            req.headers["X-Amz-Date"] = timestamp
        names = set(state.signed_headers)
        _set_token(req.headers, names, cred.access_token)
        signed = tuple(sorted(n for n in names | {"host"} if n == "host" or n in req.headers))
        _rewrite_query(req)
        headers = canonical_headers(req, signed) or ""
        sig = self.sign(req, auth, cred, timestamp, headers, signed, payload, False)
        scope = self.scope(auth, timestamp)
        req.headers["Authorization"] = (
            f"{self.algorithm} Credential={cred.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={sig}"
        )
        return sig

    def sign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        timestamp: str,
        headers: str,
        signed: tuple[str, ...],
        payload: str,
        in_query: bool,
    ) -> str:
        """The signature of ``req`` by ``cred`` at ``timestamp`` over the ``signed`` headers
        (``headers``: their canonical form) and ``payload`` (hash or marker)."""
        uri = canonical_uri(req.path, raw=self.is_raw_path(auth.service or ""))[0]
        query = canonical_query(req.query, drop_signature=in_query)[0]
        creq = canonical_request(req.method, uri, query, headers, signed, payload)
        key = self._key(cred.secret_key, auth, timestamp)
        return signature(key, self.algorithm, timestamp, self.scope(auth, timestamp), creq)


def _state(auth: ParsedAuth) -> SigV4State:
    if not isinstance(auth.state, SigV4State):
        raise TypeError("ParsedAuth was not produced by a SigV4 signer")
    return auth.state


def _set_token(headers: CIMultiDict[str], names: set[str], token: Secret | None) -> None:
    """Carry the real session token (or none) in place of the proxy credential's."""
    headers.popall("X-Amz-Security-Token", None)
    names.discard("x-amz-security-token")
    if token is not None:
        headers["X-Amz-Security-Token"] = token.reveal()
        names.add("x-amz-security-token")


def _rewrite_query(req: SigningRequest) -> None:
    """Re-encode the query the RFC 3986 way when it is not already, so that the canonical
    query we sign is the one any verifier (AWS's or botocore's) rebuilds from the wire."""
    candidates = canonical_query(req.query)
    if len(candidates) > 1:
        req.query = "&".join(
            f"{encode_component(k)}={encode_component(v)}" for k, v in decode_query(req.query)
        )
