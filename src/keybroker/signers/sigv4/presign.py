"""SigV4 presigned URLs: the authentication carried in the query (``X-Amz-Algorithm``,
``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``,
``X-Amz-Signature``, ``X-Amz-Security-Token``), parsed and re-signed.

:class:`~keybroker.signers.sigv4.scheme.SigV4Scheme` calls these functions with itself as
``scheme`` (a :class:`QueryScheme`).  Parsing errors raise
:class:`~keybroker.errors.MalformedSignature` naming the faulty parameter, never its value.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.sigv4.canonical import canonical_headers, decode_query, encode_component
from keybroker.signers.sigv4.parse import (
    SigV4State,
    parse_scope,
    parse_signature,
    parse_signed_headers,
    parse_timestamp,
)

__all__ = ["MAX_EXPIRES", "QueryScheme", "parse_query_auth", "resign_query"]

MAX_EXPIRES = 604800  # seven days: AWS's limit for presigned URLs

_QUERY_AUTH = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)


class QueryScheme(Protocol):
    """What presigning needs of the SigV4 scheme it works for."""

    algorithm: ClassVar[str]

    def payload(
        self, headers: CIMultiDict[str], service: str, *, in_query: bool
    ) -> tuple[BodyPolicy, str | None, str | None]: ...

    def scope(self, auth: ParsedAuth, timestamp: str) -> str: ...

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
    ) -> str: ...


def parse_query_auth(scheme: QueryScheme, req: SigningRequest) -> ParsedAuth:
    """The ``X-Amz-*`` authentication of a presigned request.  Raises ``MalformedSignature``."""
    params = _auth_params(req.query)
    if params.get("X-Amz-Algorithm") != scheme.algorithm:
        raise MalformedSignature(f"X-Amz-Algorithm must be {scheme.algorithm}")
    for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if name not in params:
            raise MalformedSignature(f"presigned request is missing {name}")
    timestamp = params["X-Amz-Date"]
    signed_at = parse_timestamp(timestamp)
    access_key, region, service = parse_scope(params["X-Amz-Credential"], timestamp, "aws4_request")
    names = parse_signed_headers(params["X-Amz-SignedHeaders"], in_query=True)
    sig = parse_signature(params["X-Amz-Signature"])
    raw_expires = params.get("X-Amz-Expires")
    expires = None if raw_expires is None else _parse_expires(raw_expires)
    policy, sha, line = scheme.payload(req.headers, service, in_query=True)
    state = SigV4State(timestamp, "", names, line, sig)
    return ParsedAuth(
        access_key,
        signed_at,
        region,
        service,
        body=policy,
        payload_sha256=sha,
        in_query=True,
        expires=expires,
        state=state,
        signature=bytes.fromhex(sig),
    )


def resign_query(
    scheme: QueryScheme,
    req: SigningRequest,
    auth: ParsedAuth,
    state: SigV4State,
    cred: Credential,
    timestamp: str,
    payload: str,
) -> str:
    """Sign ``req`` in place as a presigned request with ``cred`` at ``timestamp``; return
    the new signature."""
    names = set(state.signed_headers) - {"x-amz-security-token"}
    signed = tuple(sorted(n for n in names | {"host"} if n == "host" or n in req.headers))
    params = [(k, v) for k, v in decode_query(req.query) if k not in _QUERY_AUTH]
    params += [
        ("X-Amz-Algorithm", scheme.algorithm),
        ("X-Amz-Credential", f"{cred.access_key}/{scheme.scope(auth, timestamp)}"),
        ("X-Amz-Date", timestamp),
    ]
    if auth.expires is not None:
        params.append(("X-Amz-Expires", str(auth.expires)))
    params.append(("X-Amz-SignedHeaders", ";".join(signed)))
    if cred.access_token is not None:
        params.append(("X-Amz-Security-Token", cred.access_token.reveal()))
    req.query = "&".join(f"{encode_component(k)}={encode_component(v)}" for k, v in params)
    headers = canonical_headers(req, signed) or ""
    sig = scheme.sign(req, auth, cred, timestamp, headers, signed, payload, True)
    req.query += f"&X-Amz-Signature={sig}"
    return sig


def _parse_expires(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise MalformedSignature("X-Amz-Expires must be a whole number of seconds")
    expires = int(value)
    if not 1 <= expires <= MAX_EXPIRES:
        raise MalformedSignature(f"X-Amz-Expires must be between 1 and {MAX_EXPIRES}")
    return expires


def _auth_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, val in decode_query(query):
        if key in _QUERY_AUTH:
            if key in params:
                raise MalformedSignature(f"presigned request repeats {key}")
            params[key] = val
    return params
