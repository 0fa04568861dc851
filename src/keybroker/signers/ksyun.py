"""Kingsoft Cloud (vendor code ``ksyun``): AWS Signature Version 4 with Kingsoft's services.

Kingsoft's OpenAPI takes ``AWS4-HMAC-SHA256`` exactly as AWS defines it (same canonical
request, same ``AWS4`` key derivation, ``X-Amz-Date`` and ``X-Amz-Credential`` names), so
this module is a thin subclass of :class:`~keybroker.signers.sigv4.scheme.SigV4Scheme`.  key-proxy
hard-codes the signing service ``cdn``; we take region and service from the credential scope,
so every Kingsoft service (``iam``, ``kec``, ``cdn``, ...) works.

Two Kingsoft specifics:

* Endpoints are ``{service}.api.ksyun.com`` (the rule of Kingsoft's Python SDK, whose
  ``HttpProfile.rootDomain`` is ``api.ksyun.com``), whatever the region.
* Kingsoft's SDK builds its query with form encoding (a space becomes ``+``) and signs it with
  ``requests-aws4auth``, which decodes ``+`` as a space.  A ``+`` in a Kingsoft query therefore
  means a space: verification accepts that reading too, and the re-signed request spells it
  ``%20``, which every decoder reads as a space.

The operation (policy, audit) is the ``Action`` parameter, in the query or the form body.

Native mode: a Kingsoft request is byte-for-byte an AWS-style request; AWS and Kingsoft
accounts coexist on one proxy because the proxy picks the account (and so this signer) by the
proxy access key inside the signature.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar

from keybroker.credentials import Credential
from keybroker.errors import SignatureMismatch
from keybroker.signers._action_params import query_actions
from keybroker.signers._read_actions import is_read_action
from keybroker.signers.base import Operation, ParsedAuth, SigningRequest
from keybroker.signers.sigv4.scheme import SigV4Scheme

__all__ = ["ROOT_DOMAIN", "SIGNER", "KsyunSigner"]

#: the SDK's default root domain; every service is ``{service}.api.ksyun.com``
ROOT_DOMAIN = "api.ksyun.com"
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class KsyunSigner(SigV4Scheme):
    """Kingsoft Cloud SigV4; stateless and thread-safe."""

    vendor: ClassVar[str] = "ksyun"
    access_key_prefix: ClassVar[str] = "AKLT"
    public_domains: ClassVar[tuple[str, ...]] = ("." + ROOT_DOMAIN,)
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return "KsyunSigner()"

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature; a ``+`` in the query may stand for a space (see the
        module docstring).  Raises ``SignatureMismatch``."""
        if "+" not in req.query:
            super().verify(req, auth, cred, body)
            return
        spaced = req.copy()
        spaced.query = _plus_as_space(req.query)
        matched = False
        # both readings are always checked: the time taken says nothing about which matched
        for candidate in (req, spaced):
            try:
                super().verify(candidate, auth, cred, body)
                matched = True
            except SignatureMismatch:
                pass
        if not matched:
            raise SignatureMismatch()

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Sign ``req`` with ``cred`` at ``now``; a ``+`` in the query is sent as ``%20``.

        Raises ``MalformedSignature`` (aws-chunked streams) and ``ValueError`` (naive ``now``).
        """
        req.query = _plus_as_space(req.query)
        super().resign(req, auth, cred, body, now)

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """Kingsoft's OpenAPI reads ``Action`` from the query or the form body (two different
        values are refused, 400); a request without one is unclassified."""
        actions = query_actions(req, body)
        action = next(iter(actions)) if actions else None
        method_ok = req.method.upper() in ("GET", "HEAD", "POST")
        return Operation(auth.service, action, None, method_ok and is_read_action(action))

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://{service}.api.ksyun.com`` for the signed service (any region)."""
        service = (auth.service or "").lower()
        if not _SERVICE.fullmatch(service):
            return None
        return f"https://{service}.{ROOT_DOMAIN}"


def _plus_as_space(query: str) -> str:
    return query.replace("+", "%20")


SIGNER = KsyunSigner()
