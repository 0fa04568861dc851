"""UCloud's API signature: SHA-1 over the sorted parameters followed by the private key.

Every request parameter travels as ``name=value`` (in the query of a GET, or in a form or
JSON body of a POST) together with ``PublicKey`` (the access key) and ``Signature``::

    Signature = hex(SHA1( name1 value1 name2 value2 ... PrivateKey ))

names sorted (byte order), every parameter but ``Signature`` itself, values un-escaped.  In
a JSON body, nested objects and arrays are flattened the way the SDKs flatten them
(``Key.Sub``, ``List.0``, ``List.0.Sub``), booleans are ``true``/``false`` and a number whose
fraction is zero is written without it (``42.0`` -> ``42``), as the public documentation
says.

The scheme signs no time and no host: a captured request can be replayed, unchanged, for as
long as the proxy key pair is valid (the vendor's own ``U-Timestamp-Ms`` header is not signed).

The signed parameters are the credential, so this is a *body credential* scheme
(``body_credentials = True``): the proxy reads the body before parsing, and ``resign``
rewrites ``PublicKey``/``Signature`` inside the body (or the query) in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote_plus, unquote_plus

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers._action_params import rpc_operation
from keybroker.signers.base import (
    BodyPolicy,
    ErrorAnswer,
    Operation,
    ParsedAuth,
    SignerBase,
    SigningRequest,
    json_error,
)
from keybroker.signers.common import media_type, require_equal, state_of

__all__ = ["SIGNER", "UCloudSigner", "flatten_json", "string_to_sign"]

PUBLIC_KEY = "PublicKey"
SIGNATURE = "Signature"
DEFAULT_ENDPOINT = "https://api.ucloud.cn"
_MAX_PARAMS = 4096
_MAX_DEPTH = 16
_SIGNATURE_RE = re.compile(r"[0-9a-f]{40}")
_PUBLIC_KEY_RE = re.compile(r"[\x21-\x7e]{1,512}")

# where the parameters were found
QUERY, FORM, JSON = "query", "form", "json"


@dataclass(frozen=True, slots=True)
class _State:
    location: str
    params: tuple[tuple[str, str], ...]  # every parameter, Signature included
    signature: str

    def __repr__(self) -> str:
        return f"_State(location={self.location!r}, params={len(self.params)})"


def _bad(message: str) -> MalformedSignature:
    return MalformedSignature(f"UCloud signature: {message}")


# --------------------------------------------------------------------------- parameters


def _decode_pairs(raw: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            pairs.append(
                (unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict"))
            )
        except UnicodeDecodeError:
            raise _bad(f"the {what} has a percent-escape that is not UTF-8") from None
    return pairs


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _bad(f"JSON value {path!r} is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | str):
        return str(value)
    raise _bad(f"JSON value {path!r} is null, which cannot be signed")


def flatten_json(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Flatten a JSON object into signed ``(name, value)`` pairs.  Raises
    ``MalformedSignature`` for nulls, non-finite numbers or nesting deeper than 16."""
    if depth > _MAX_DEPTH:
        raise _bad(f"the JSON body nests deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = list(value.items())
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return [(prefix, _scalar(value, prefix))]
    out: list[tuple[str, str]] = []
    for key, sub in items:
        out.extend(flatten_json(sub, f"{prefix}.{key}" if prefix else key, depth + 1))
    return out


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        # Which copy a server would read is anyone's guess: refuse, as for repeated parameters.
        raise _bad("the JSON body has a repeated key")
    return doc


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("the JSON body cannot be parsed") from None
    if not isinstance(doc, dict):
        raise _bad("the JSON body must be an object")
    return doc


def _body_kind(req: SigningRequest) -> str | None:
    if not req.body:
        return None
    ctype = media_type(req)
    if ctype == "application/json":
        return JSON
    if ctype in ("application/x-www-form-urlencoded", ""):
        return FORM
    return None


def _locate(req: SigningRequest) -> tuple[str, list[tuple[str, str]]]:
    """Where the signed parameters are, and the parameters."""
    kind = _body_kind(req)
    body = req.body or b""
    if kind is not None:
        if req.query:
            raise _bad("parameters in both the query and the body are not supported")
        if kind == JSON:
            return JSON, flatten_json(_load_json(body))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("the form body is not UTF-8") from None
        return FORM, _decode_pairs(text, "form body")
    if body:
        raise _bad("a request body must be a form or JSON when the query is signed")
    return QUERY, _decode_pairs(req.query, "query")


def string_to_sign(params: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """The sorted ``name+value`` concatenation (without ``Signature``), before the key."""
    kept = sorted((k, v) for k, v in params if k != SIGNATURE)
    return "".join(f"{k}{v}" for k, v in kept)


def _signature(params: tuple[tuple[str, str], ...], private_key: bytes) -> str:
    data = string_to_sign(params).encode("utf-8") + private_key
    # SHA-1 is the vendor's choice, not ours; it is what the server recomputes.
    return hashlib.sha1(data).hexdigest()  # noqa: S324


def _single(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    return values[0] if values else None


def _check_unique(params: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for name, _ in params:
        if name in seen:
            # The SDKs never repeat a name, and which copy the server reads is unknown.
            raise _bad(f"parameter {name[:64]!r} appears more than once")
        seen.add(name)


# --------------------------------------------------------------------------- rewriting


def _replace_encoded(raw: str, values: dict[str, str]) -> str:
    """Swap the values of ``values``' names in a form/query string, other parts untouched."""
    parts = []
    for part in raw.split("&"):
        name = unquote_plus(part.partition("=")[0])
        if part and name in values:
            part = f"{quote_plus(name)}={quote_plus(values[name])}"
        parts.append(part)
    return "&".join(parts)


def _replace_json(body: bytes, values: dict[str, str]) -> bytes:
    doc = _load_json(body)
    doc.update(values)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- the signer


class UCloudSigner(SignerBase):
    """UCloud ``PublicKey``/``Signature`` parameters (SHA-1 over sorted parameters)."""

    vendor: ClassVar[str] = "ucloud"
    public_domains: ClassVar[tuple[str, ...]] = (".ucloud.cn", ".ucloud-global.com")
    #: none known: these API domains name no customer-controlled host
    excluded_hosts: ClassVar[tuple[str, ...]] = ()
    #: the credential travels in the (form or JSON) body of a POST
    body_credentials: ClassVar[bool] = True
    #: the parameter naming the credential (read from a long body's first bytes)
    body_credential_param: ClassVar[str] = PUBLIC_KEY

    def __repr__(self) -> str:
        return "UCloudSigner()"

    def detect(self, req: SigningRequest) -> bool:
        """True when the query, or the body, carries both ``PublicKey`` and ``Signature``."""
        names = {name for name, _ in req.query_pairs()}
        if PUBLIC_KEY in names and SIGNATURE in names:
            return True
        body = req.body or b""
        return PUBLIC_KEY.encode() in body and SIGNATURE.encode() in body

    def parse(self, req: SigningRequest) -> ParsedAuth:
        """Find the signed parameters.  Raises ``MalformedSignature``."""
        location, params = _locate(req)
        if len(params) > _MAX_PARAMS:
            raise _bad(f"more than {_MAX_PARAMS} parameters")
        _check_unique(params)
        public_key = _single(params, PUBLIC_KEY)
        signature = _single(params, SIGNATURE)
        if public_key is None or signature is None:
            raise _bad(f"the {location} must carry PublicKey and Signature")
        if not _PUBLIC_KEY_RE.fullmatch(public_key):
            raise _bad("PublicKey is empty or has invalid characters")
        if not _SIGNATURE_RE.fullmatch(signature):
            raise _bad("Signature must be 40 lower-case hex digits")
        return ParsedAuth(
            access_key=public_key,
            region=_single(params, "Region"),
            action=_single(params, "Action"),
            body=BodyPolicy.BUFFER,
            state=_State(location, tuple(params), signature),
        )

    @staticmethod
    def _state(auth: ParsedAuth) -> _State:
        return state_of(auth, _State, "UCloudSigner")

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        """Recompute the signature with ``cred``.  Raises ``SignatureMismatch`` (opaque).

        The parameters are those ``parse`` read from ``req``: the body and query must not have
        changed in between (the proxy passes the same request to both).
        """
        state = self._state(auth)
        public_key = _single(list(state.params), PUBLIC_KEY) or ""
        require_equal(cred.access_key, public_key)
        require_equal(_signature(state.params, cred.secret_key.reveal_bytes()), state.signature)

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> None:
        """Swap ``PublicKey`` for the real one and re-sign, where the parameters are (query
        or ``req.body``).  ``now`` is unused: the scheme signs no time."""
        state = self._state(auth)
        params = tuple(
            (k, cred.access_key if k == PUBLIC_KEY else v)
            for k, v in state.params
            if k != SIGNATURE
        )
        new = {
            PUBLIC_KEY: cred.access_key,
            SIGNATURE: _signature(params, cred.secret_key.reveal_bytes()),
        }
        if state.location == QUERY:
            req.query = _replace_encoded(req.query, new)
        elif state.location == FORM:
            text = (req.body or b"").decode("utf-8")
            req.body = _replace_encoded(text, new).encode("utf-8")
        else:
            req.body = _replace_json(req.body or b"", new)

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """The action ``parse`` read where the vendor reads it; another ``Action`` elsewhere
        is a 400, a REST path unclassified (:func:`._action_params.rpc_operation`)."""
        return rpc_operation(req, auth, body)

    def native_error(
        self,
        service: str | None,
        headers: Mapping[str, str],
        code: str,
        message: str,
        request_id: str,
    ) -> ErrorAnswer | None:
        """The refusal as UCloud's SDKs (a non-zero ``RetCode``) read an error answer."""
        return json_error(
            {"RetCode": 172, "Message": f"{code}: {message}", "RequestId": request_id}
        )

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """UCloud serves every product's API at ``api.ucloud.cn``."""
        return DEFAULT_ENDPOINT


SIGNER = UCloudSigner()
