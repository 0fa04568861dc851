"""What a key-service request's signature must cover: the time and the whole body.

A key request hands out key material, so a captured request must be worth nothing beyond its
one use.  The proxy's replay cache makes a signed request single-use, but only when the
signature covers everything the service acts on:

- **the body**: the scheme signs its hash (a header such as ``x-amz-content-sha256`` holding
  the hex SHA-256, checked against the body received) or hashes the buffered body itself.
  Every unsigned-body form is refused: ``UNSIGNED-PAYLOAD`` (SigV4, TC3, Huawei), the
  ``STREAMING-*`` chunked forms (the chunk signatures are the proxy's business when it
  forwards, never the key service's), Volcengine's ``X-NotSignBody``, and schemes that leave
  the body out (Wangsu, Baidu without ``x-bce-content-sha256``, Qiniu for bodies it does not
  sign, Akamai outside ``POST``).  A Huawei request with an empty body is signed as the hash
  of nothing whatever its header says, and is served when the body's length is not declared;
- **the time**: a scheme that signs no time (UCloud, Baishan, Qiniu's ``QBox`` and ``Qiniu``
  without ``X-Qiniu-Date``) cannot be told apart from its replay, forever: refused too.
"""

from __future__ import annotations

from keybroker.errors import SignatureMismatch
from keybroker.signers.base import BodyPolicy, ParsedAuth

__all__ = ["require_signed_whole"]

_SIGNED_BODY = (BodyPolicy.BUFFER, BodyPolicy.CLAIMED_SHA256)


def require_signed_whole(auth: ParsedAuth) -> None:
    """Refuse a key-service request whose signature leaves out the body or the time.
    Raises ``SignatureMismatch`` (401)."""
    if auth.body not in _SIGNED_BODY:
        raise SignatureMismatch(
            "key-service requests must sign the body (its SHA-256 in the signature); "
            "unsigned and streaming payloads are refused"
        )
    if auth.body is BodyPolicy.CLAIMED_SHA256 and not auth.payload_sha256:
        raise SignatureMismatch("key-service requests must sign the body's SHA-256")
    if auth.signed_at is None:
        raise SignatureMismatch(
            "key-service requests must use a signature scheme that signs the time"
        )
