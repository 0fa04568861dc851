"""Baishan Cloud's API token: a static ``token`` parameter, swapped for the real one.

Baishan's documented authentication is "https + token": the account's API token in the
query (``?token=...``); its examples also show it inside a JSON body, and bodies may be form
encoded.  There is nothing to sign: the proxy token *is* the proxy credential, so
verification is a constant-time comparison and re-signing puts the real token in its place.

Configuration: the token goes in ``SecretKey`` (held as a secret, never shown or logged);
``AccessKey`` is not needed.  Requests are matched to an account by a SHA-256 fingerprint of
the token (:func:`token_id`), never by the token itself.

The token is a bearer secret: whoever sees one request can send any other request, at any
time, until the token is changed.  No time, method, path or body is covered, so the proxy
adds nothing against replay beyond TLS; keep the proxy token as guarded as the real one.

Detection is deliberately the last resort (``body_credentials`` schemes are tried after every
header/query scheme, and this one is registered last): a ``token`` parameter is common.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote_plus, unquote_plus

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SignerBase, SigningRequest
from keybroker.signers.common import media_type, require_equal, state_of

__all__ = ["SIGNER", "TOKEN", "BaishanSigner", "token_id"]

TOKEN = "token"
DEFAULT_ENDPOINT = "https://cdn.api.baishan.com"
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,512}")
# Parameters of other vendors' query signatures: a request with these is not Baishan's.
_FOREIGN = frozenset(
    {"Signature", "X-Amz-Signature", "X-Signature", "PublicKey", "AccessKeyId", "authorization"}
)

QUERY, FORM, JSON = "query", "form", "json"


def token_id(token: str) -> str:
    """The identifier of a token: ``token-sha256:`` + 32 hex digits of its SHA-256."""
    return "token-sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _State:
    location: str
    token: Secret

    def __repr__(self) -> str:
        return f"_State(location={self.location!r})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"Baishan token: {message}")


def _tokens_in_encoded(raw: str) -> list[str]:
    found = []
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        if unquote_plus(name) == TOKEN:
            found.append(unquote_plus(value))
    return found


def _body_kind(req: SigningRequest) -> str | None:
    if not req.body:
        return None
    ctype = media_type(req)
    if ctype == "application/json":
        return JSON
    if ctype == "application/x-www-form-urlencoded":
        return FORM
    return None


def _json_pairs(body: bytes) -> list[tuple[str, Any]] | None:
    """The top-level members of a JSON object body, repeated names kept; else ``None``."""
    top: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        top.append(pairs)  # the outermost object is the last one closed
        return dict(pairs)

    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=keep)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return top[-1] if isinstance(doc, dict) else None


def _json_object(body: bytes) -> dict[str, Any] | None:
    pairs = _json_pairs(body)
    return dict(pairs) if pairs is not None else None


def _tokens_in_body(req: SigningRequest) -> tuple[str | None, list[object]]:
    kind = _body_kind(req)
    body = req.body or b""
    if kind == JSON:
        pairs = _json_pairs(body) or []
        found: list[object] = [v for k, v in pairs if k == TOKEN]
        return (JSON, found) if found else (None, [])
    if kind == FORM:
        try:
            return FORM, list(_tokens_in_encoded(body.decode("utf-8")))
        except UnicodeDecodeError:
            return None, []
    return None, []


def _find(req: SigningRequest) -> tuple[str, str]:
    in_query = _tokens_in_encoded(req.query) if req.query else []
    kind, in_body = _tokens_in_body(req)
    if in_query and in_body:
        raise _bad("the token is in both the query and the body")
    found: list[object] = list(in_query) or in_body
    location = QUERY if in_query else (kind or QUERY)
    if not found:
        raise _bad("no token parameter in the query or the body")
    if len(found) > 1:
        raise _bad("the token parameter appears more than once")
    token = found[0]
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise _bad("the token must be 1-512 printable ASCII characters")
    return location, token


class BaishanSigner(SignerBase):
    """Baishan Cloud static API token (``token`` parameter)."""

    vendor: ClassVar[str] = "baishan"
    public_domains: ClassVar[tuple[str, ...]] = (".baishan.com", ".baishancloud.com")
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()
    #: the token may travel in the body (JSON or form), so the proxy reads it first
    body_credentials: ClassVar[bool] = True
    #: the parameter carrying the token (read from a long body's first bytes); its
    #: identifier is the token's fingerprint (``body_credential_id``)
    body_credential_param: ClassVar[str] = TOKEN
    #: the token is the whole credential; it is kept in ``SecretKey``
    credential_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    def __repr__(self) -> str:
        return "BaishanSigner()"

    @staticmethod
    def body_credential_id(token: str) -> str:
        """The identifier a token found in a body's first bytes is matched by."""
        return token_id(token)

    def credential_id(self, cred: Credential) -> str:
        """Requests name their account by the fingerprint of the token (never the token)."""
        return token_id(cred.secret_key.reveal())

    def detect(self, req: SigningRequest) -> bool:
        """True for a lone ``token`` parameter with no Authorization header and no other
        vendor's signature parameter (a Qiniu download token ``ak:sign:...`` is not one)."""
        if "Authorization" in req.headers:
            return False
        if any(name in _FOREIGN for name, _ in req.query_pairs()):
            return False
        try:
            _, token = _find(req)
        except MalformedSignature:
            return False
        return ":" not in token

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Find the token.  Raises ``MalformedSignature`` (the message never shows it)."""
        location, token = _find(req)
        return ParsedAuth(
            access_key=token_id(token),
            body=BodyPolicy.BUFFER,
            state=_State(location, Secret(token)),
        )

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "BaishanSigner")

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Compare the token with ``cred``'s in constant time.  Raises ``SignatureMismatch``."""
        state = self._state(auth)
        require_equal(state.token.reveal_bytes(), cred.secret_key.reveal_bytes())

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Put ``cred``'s token where the proxy token was.  ``now`` is unused."""
        state = self._state(auth)
        real = cred.secret_key.reveal()
        if state.location == QUERY:
            req.query = _replace_encoded(req.query, real)
        elif state.location == FORM:
            req.body = _replace_encoded((req.body or b"").decode("utf-8"), real).encode("utf-8")
        else:
            doc = _json_object(req.body or b"")
            if doc is None:  # parse() read this very body; only a changed request lands here
                raise _bad("the JSON body changed after parsing")
            doc[TOKEN] = real
            req.body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """Baishan's CDN API endpoint."""
        return DEFAULT_ENDPOINT


def _replace_encoded(raw: str, token: str) -> str:
    parts = []
    for part in raw.split("&"):
        if part and unquote_plus(part.partition("=")[0]) == TOKEN:
            part = f"{TOKEN}={quote_plus(token)}"
        parts.append(part)
    return "&".join(parts)


SIGNER = BaishanSigner()
