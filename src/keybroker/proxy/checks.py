"""The checks a request passes before the proxy forwards it.

In the order :class:`keybroker.proxy.app.Proxy` applies them:

* before anything is parsed: the header size (431), one copy of each header read as one value
  (400) and the client allow-list (403);
* the proxy credential the signature names, its expiry, the signed time's freshness and the
  signature itself (401, ``SignatureMismatch`` / ``RequestExpired``);
* the operation the vendor will execute (the signer's reading) and the facts an account's
  policy is checked against;
* the replay cache, once the operation is known (``Security.ReplayProtection`` decides on it):
  a signature is used once within its validity (``Replayed``).

Plain functions, called directly on the request path; the clock and the config are passed in
by the proxy (the clock is injectable for tests).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from keybroker import signers
from keybroker.context import RequestContext
from keybroker.credentials import Credential
from keybroker.errors import (
    Forbidden,
    HeadersTooLarge,
    MalformedRequest,
    Replayed,
    RequestExpired,
    SignatureMismatch,
)
from keybroker.http.messages import Request
from keybroker.metrics import instruments as metrics
from keybroker.proxy import policy
from keybroker.proxy.routing import Route
from keybroker.replay.base import MAX_TTL_SECONDS, ReplayCache, ReplayCacheUnavailable
from keybroker.secret import constant_time_equal
from keybroker.settings import Config, Endpoint
from keybroker.signers import Operation, ParsedAuth, Signer, SigningRequest

__all__ = [
    "SINGLETON_HEADERS",
    "ReplayEntry",
    "admit",
    "check_fresh",
    "check_header_size",
    "check_replay",
    "check_singletons",
    "policy_facts",
    "proxy_credential",
    "replay_applies",
    "replay_key",
    "request_operation",
    "spelling_key",
    "verify_signature",
]

Clock = Callable[[], datetime]

log = logging.getLogger("keybroker.proxy")


#: Headers a signer, the router or a vendor reads as one value (credentials, signed times,
#: body hashes, tokens, the action, the body's type, key-proxy's control headers).  A second
#: copy is refused: joined, or first-wins here and last-wins upstream, two copies would let
#: what is verified differ from what is executed.
SINGLETON_HEADERS = frozenset(
    {
        "authorization",
        "date",
        "content-type",
        "content-md5",
        "expect",
        # signed times
        "x-amz-date",
        "x-date",
        "x-tc-timestamp",
        "x-sdk-date",
        "x-bce-date",
        "x-acs-date",
        "x-jdcloud-date",
        "x-cnc-date",
        "x-cnc-timestamp",
        "x-qiniu-date",
        # body hashes and stream framing
        "x-amz-content-sha256",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "x-acs-content-sha256",
        "x-tc-content-sha256",
        "x-content-sha256",
        "x-bce-content-sha256",
        "x-jdcloud-content-sha256",
        # tokens, nonces, key ids
        "x-amz-security-token",
        "x-security-token",
        "x-acs-security-token",
        "x-acs-accesskey-id",
        "x-acs-signature-nonce",
        "x-tc-token",
        "x-bce-security-token",
        "x-jdcloud-security-token",
        "x-jdcloud-nonce",
        "x-cnc-accesskey",
        # what is executed
        "x-amz-target",
        "x-amz-account-id",  # S3 Control: with it, the path names a control operation
        "x-acs-action",
        "x-acs-version",
        "x-tc-action",
        "x-tc-version",
        "x-tc-region",
        # key-proxy's control headers
        "x-mcdn-origin-uri",
        "x-mcdn-cloud-account-name",
        "x-mcdn-kept-headers",
        "x-mcdn-vendor-name",
        "x-mcdn-request-id",
        "x-origin-host",
    }
)


def admit(request: Request, config: Config) -> None:
    """Checks before anything is parsed: header size (431), singleton headers (400), client
    allow-list (403)."""
    check_header_size(request, config.http.max_header_bytes)
    check_singletons(request)
    if not policy.ip_allowed(request.remote, config.security.allowed_client_cidrs):
        raise Forbidden("this client address may not use the proxy")


def check_header_size(request: Request, limit: int) -> None:
    if request.head_size > limit:
        raise HeadersTooLarge(f"request headers exceed {limit} bytes")
    if request.bad_header is not None:
        raise MalformedRequest(f"header {request.bad_header!r} is not valid UTF-8")


def check_singletons(request: Request) -> None:
    """Each of :data:`SINGLETON_HEADERS` at most once.  Raises ``MalformedRequest``."""
    seen: set[str] = set()
    for name, _ in request.headers.items():  # every copy, in order (keys() has each once)
        low = name.lower()
        if low in SINGLETON_HEADERS:
            if low in seen:
                raise MalformedRequest(f"header {name!r} appears more than once")
            seen.add(low)


# ---------------------------------------------------------------------- the signature


def verify_signature(
    signed: SigningRequest,
    signer: Signer,
    auth: ParsedAuth,
    endpoint: Endpoint,
    body: bytes | None,
    clock: Clock,
    config: Config,
) -> Credential:
    """The request is signed with one of the account's proxy credentials, unexpired, at a
    time within the allowed skew (or the presigned validity); return that credential (a
    chunk-signed body's chunks are checked with it while they stream)."""
    cred = proxy_credential(signer, endpoint, auth.access_key)
    if cred.expires_at is not None and clock() >= cred.expires_at:
        raise SignatureMismatch("the proxy credential has expired")
    check_fresh(auth, clock, config)
    signer.verify(signed, auth, cred, body)
    return cred


def proxy_credential(signer: Signer, endpoint: Endpoint, access_key: str) -> Credential:
    """The account's proxy credential named in the signature (several may be valid during a
    rotation); every candidate is compared, in constant time."""
    found = None
    for cred in (endpoint.proxy, *endpoint.additional_proxies):
        if constant_time_equal(access_key, signer.credential_id(cred)):
            found = cred
    if found is None:
        raise SignatureMismatch()
    return found


def check_fresh(auth: ParsedAuth, clock: Clock, config: Config) -> None:
    if auth.signed_at is None:
        return
    now = clock()
    skew = timedelta(seconds=config.security.clock_skew_seconds)
    if auth.signed_at > now + skew:
        raise RequestExpired("the request is signed with a time in the future")
    if auth.expires is not None:
        # a validity the signer chose (Baidu, Volcengine: up to 31 years) counts for at most
        # as long as the replay cache can remember the signature: a captured request that
        # changes something must not become usable again once its entry has expired
        validity = min(auth.expires, MAX_TTL_SECONDS)
        if now > auth.signed_at + timedelta(seconds=validity):
            raise RequestExpired("the presigned request has expired")
    elif auth.signed_at < now - skew:
        raise RequestExpired("the request signature is too old")


# ---------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    """A recorded replay key: :meth:`release` it when the request provably never reached the
    upstream, so the client's identical retry is not refused as a replay."""

    cache: ReplayCache
    key: bytes

    async def release(self) -> None:
        """Forget the key; a cache that cannot answer is logged (the entry then expires as
        usual), never raised: the request's own error is what the client must see."""
        try:
            await self.cache.release(self.key)
        except ReplayCacheUnavailable:
            log.warning("replay entry not released: the replay cache is unavailable")


def replay_applies(protection: str, operation: Operation | None) -> bool:
    """Whether ``Security.ReplayProtection`` makes this request single use: ``off`` never,
    ``all`` always, ``mutating`` unless the signer knows the operation changes nothing
    (``operation is None``, the key service's requests: always)."""
    if protection == "off":
        return operation is None
    if protection == "all" or operation is None:
        return True
    return not operation.read_only


async def check_replay(
    cache: ReplayCache | None,
    signed: SigningRequest,
    auth: ParsedAuth,
    endpoint: Endpoint,
    body: bytes | None,
    clock: Clock,
    config: Config,
    *,
    signer: Signer | None = None,
    operation: Operation | None = None,
) -> ReplayEntry | None:
    """Refuse a second use of the same signature within its validity (``Replayed``) and
    return the recorded entry (``None`` when nothing was recorded, or for a read: a read's
    use is remembered — so that the same signature cannot come back as a write by changing
    what it leaves unsigned — but it may repeat, and is never released).

    ``operation`` is what the vendor will execute; ``None`` (the key service) makes every
    request single use whatever ``Security.ReplayProtection`` says.  Only for schemes that
    sign a time: a scheme without one (QBox, UCloud, Baishan) makes two legitimate identical
    requests indistinguishable from a replay, forever.
    """
    if cache is None or auth.signed_at is None:
        return None
    single_use = replay_applies(config.security.replay_protection, operation)
    if not single_use and config.security.replay_protection == "off":
        return None
    skew = config.security.clock_skew_seconds
    valid_until = auth.signed_at.timestamp() + max(skew, auth.expires or 0)
    ttl = valid_until - clock().timestamp() + 1.0
    if ttl <= 0:
        return None
    if signer is None:
        signer = signers.get(endpoint.vendor)
    key = replay_key(signer, endpoint.vendor, signed, auth, body)
    try:
        first = await cache.first_use(key, min(ttl, MAX_TTL_SECONDS))
    except ReplayCacheUnavailable:
        metrics.DEFAULT.replay_cache_errors.inc()
        raise
    if not single_use:
        # a read may repeat, but its use is remembered: the same signature must not come back
        # as a write by changing what it leaves unsigned (Tencent's SDK signs no X-TC-Action)
        return None
    if not first:
        raise Replayed("this signed request was already used (replay)")
    return ReplayEntry(cache, key)


def replay_key(
    signer: Signer, vendor: str, signed: SigningRequest, auth: ParsedAuth, body: bytes | None
) -> bytes:
    """The replay cache's key: a digest of what the signature means
    (:meth:`Signer.replay_identity <keybroker.signers.Signer.replay_identity>`), identical
    for every spelling of one signature.  A scheme that leaves ``ParsedAuth.signature`` empty
    (a library's own signer) is keyed on the request's spelling, as before."""
    identity = signer.replay_identity(signed, auth)
    if identity is not None:
        return hashlib.sha256(b"keybroker-replay-v2\0" + identity).digest()
    # (the digest verify computed, or the spooled body's)
    return spelling_key(vendor, signed, auth.body_digest(body) if body else auth.body_sha256)


def spelling_key(vendor: str, signed: SigningRequest, body_sha256: str | None) -> bytes:
    """Everything a signature can cover, as spelled: the key for a scheme that does not
    expose its signature's bytes (``body_sha256``: the body's SHA-256 in hex, or ``None``)."""
    h = hashlib.sha256()
    for part in (vendor, signed.method, signed.host, signed.path, signed.query):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for value in signed.headers.getall("authorization", []):
        h.update(value.encode("utf-8", "surrogateescape") + b"\0")
    if body_sha256:
        h.update(bytes.fromhex(body_sha256))
    return h.digest()


# ---------------------------------------------------------------------- policy facts


def request_operation(
    route: Route, auth: ParsedAuth, body: bytes | None, host: str | None = None
) -> Operation:
    """What the vendor will execute, as the signer reads it (``Signer.operation``).  ``host``
    is the host the request goes to (the upstream's), so that an address read from the host
    (an S3 bucket) is the one the vendor sees; the signed host by default.  Raises
    ``MalformedRequest`` for a request naming two operations."""
    if route.signer is None:
        raise ValueError("request_operation needs a routed account")
    signed = route.signed
    seen = signed if host is None or host == signed.host else replace(signed, host=host)
    return route.signer.operation(seen, auth, body)


def policy_facts(ctx: RequestContext, request: Request) -> policy.RequestFacts:
    return policy.RequestFacts(
        ctx.service, ctx.action, ctx.region, request.method, request.remote, bool(ctx.read_only)
    )
