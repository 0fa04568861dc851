"""The key service's HTTP JSON API, on the proxy's port under ``KeyService.PathPrefix``.

Every route is authenticated the way the proxy authenticates a platform: the request is signed
with one of the account's *proxy* credentials, in any registered scheme (SigV4 for service
``kms`` as botocore signs, Volcengine's, ...).  The account's ``KeyPolicy`` then decides.

==========  =====================  ========  ==========================================
method      path (under prefix)    body max  what
==========  =====================  ========  ==========================================
GET, POST   ``dek/{id}?size=N``    0         the DEK, created on first use (``get`` or
                                             ``create``); ``create=false`` only reads;
                                             ``recreate=true`` revives a deleted id
DELETE      ``dek/{id}``           0         tombstone the id (``delete``)
POST        ``generate``           4 KiB     ``{"id", "size"?}`` -> a fresh DEK and its
                                             wrapped blob, nothing stored (``generate``)
POST        ``unwrap``             96 KiB    ``{"id", "blob", "size"?}`` -> the DEK
POST        ``rewrap``             96 KiB    ``{"id", "blob"}`` -> the blob under the
                                             newest KEK version
GET         ``ids?prefix=&limit=`` 0         the caller's ids, sorted (``list``)
GET         ``status``             0         the service's state (``status``)
==========  =====================  ========  ==========================================

Keys and blobs travel as standard base64 (``plaintext``, ``blob``); answers carry
``Cache-Control: no-store``.  Errors are key-proxy's JSON (see
:mod:`keybroker.keyservice.errors`): 400 bad input, 401 bad signature, 403 policy, 404
unknown id, 409 deleted id, 413 body over the route's limit.  A caller allowed only ``get``
asking for an unknown id gets 404; one allowed ``create`` gets a new key.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keybroker import __version__
from keybroker.context import RequestContext
from keybroker.errors import Forbidden, PayloadTooLarge, ProxyError
from keybroker.http.messages import Request, StreamResponse, json_response
from keybroker.keyservice import policy
from keybroker.keyservice.errors import (
    InvalidArgument,
    MethodNotAllowed,
    UnknownOperation,
)
from keybroker.keyservice.operations import KeyBackend, KeyEvent, get_or_create
from keybroker.settings import KeyPolicy

__all__ = ["MODE", "ROUTES", "KeyServiceHTTP", "Route"]

#: ``RequestContext.mode`` of key-service requests (access log, metrics, request audit).
MODE = "keyservice"
DEFAULT_DEK_SIZE = 32
MAX_LIST = 10_000
_KIB = 1024


@dataclass
class Call:
    """One authenticated request, as a route handler sees it."""

    request: Request
    ctx: RequestContext
    policy: KeyPolicy | None
    body: bytes
    path_id: str
    query: dict[str, str]


Handler = Callable[["KeyServiceHTTP", Call, KeyEvent], Awaitable[dict[str, object]]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API route: method, name (first path segment), whether an id follows, the
    operation it audits as, the body limit and the query parameters it accepts."""

    method: str
    name: str
    with_id: bool
    operation: str
    max_body: int
    params: frozenset[str]
    handler: Handler
    authenticated: bool = True


# ----------------------------------------------------------------------- handlers


async def _get_dek(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    store, p = api.service.store, call.policy
    key_id = event.key_id = store.check_id(call.path_id)
    size = store.check_size(_size(call.query.get("size"), api.default_size))
    create = _flag(call.query, "create", default=True)
    if _flag(call.query, "recreate", default=False):
        event.operation = "create"
        policy.check(p, "create", key_id)
        if store.stores:
            await store.revive(key_id)
    dek, created = await get_or_create(store, p, key_id, size, event, create=create)
    return _dek_answer(key_id, dek, created=created)


async def _delete_dek(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    key_id = event.key_id = api.service.store.check_id(call.path_id)
    policy.check(call.policy, "delete", key_id)
    await api.service.store.delete(key_id)
    return {"id": key_id, "deleted": True}


async def _generate(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    store = api.service.store
    doc = parse_json(call.body, required={"id"}, optional={"size"})
    key_id = event.key_id = store.check_id(doc["id"])
    size = store.check_size(doc.get("size", api.default_size))
    policy.check(call.policy, "generate", key_id)
    dek, blob = await store.generate(key_id, size)
    return {"id": key_id, "size": size, "plaintext": _b64(dek), "blob": _b64(blob)}


async def _unwrap(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    store = api.service.store
    doc = parse_json(call.body, required={"id", "blob"}, optional={"size"})
    key_id = event.key_id = store.check_id(doc["id"])
    size = store.check_size(doc["size"]) if "size" in doc else None
    blob = _unb64(doc["blob"])
    policy.check(call.policy, "unwrap", key_id)
    dek = await store.unwrap(key_id, blob, size)
    return {"id": key_id, "size": len(dek), "plaintext": _b64(dek)}


async def _rewrap(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    store = api.service.store
    doc = parse_json(call.body, required={"id", "blob"}, optional=set())
    key_id = event.key_id = store.check_id(doc["id"])
    blob = _unb64(doc["blob"])
    policy.check(call.policy, "rewrap", key_id)
    return {"id": key_id, "blob": _b64(await store.rewrap(key_id, blob))}


async def _list_ids(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    prefix = event.prefix = call.query.get("prefix", "")
    limit = _limit(call.query.get("limit"))
    if not policy.can_list(call.policy, prefix):
        raise Forbidden("the key policy does not allow 'list' for this prefix")
    ids = policy.visible(call.policy, await api.service.store.list(prefix))
    return {"ids": ids[:limit], "truncated": len(ids) > limit}


async def _status(api: KeyServiceHTTP, call: Call, event: KeyEvent) -> dict[str, object]:
    policy.check(call.policy, "status")
    svc = api.service
    return {
        "status": "ok",
        "kms": svc.kms_name,
        "stores_keys": svc.store.stores,
        "grpc": svc.grpc is not None,
        "max_dek_size": svc.store.max_dek_size,
        "version": __version__,
    }


_DEK_PARAMS = frozenset({"size", "create", "recreate"})
ROUTES: tuple[Route, ...] = (
    Route("GET", "dek", True, "get", 0, _DEK_PARAMS, _get_dek),
    Route("POST", "dek", True, "get", 0, _DEK_PARAMS, _get_dek),
    Route("DELETE", "dek", True, "delete", 0, frozenset(), _delete_dek),
    Route("POST", "generate", False, "generate", 4 * _KIB, frozenset(), _generate),
    Route("POST", "unwrap", False, "unwrap", 96 * _KIB, frozenset(), _unwrap),
    Route("POST", "rewrap", False, "rewrap", 96 * _KIB, frozenset(), _rewrap),
    Route("GET", "ids", False, "list", 0, frozenset({"prefix", "limit"}), _list_ids),
    Route("GET", "status", False, "status", 0, frozenset(), _status),
)


# ----------------------------------------------------------------------- dispatch


class KeyServiceHTTP:
    """Serves :data:`ROUTES` under ``prefix``; one wrapper enforces each route's method,
    body limit and authentication, and writes the audit line."""

    def __init__(self, service: KeyBackend, prefix: str) -> None:
        self.service = service
        self.prefix = "/" + prefix.strip("/")
        self.segment = self.prefix.lstrip("/").split("/", 1)[0]
        self.default_size = min(DEFAULT_DEK_SIZE, service.store.max_dek_size)
        self._routes = {(r.method, r.name): r for r in ROUTES}
        self._names = {r.name for r in ROUTES}

    async def handle(self, request: Request, ctx: RequestContext) -> StreamResponse:
        """The proxy's service handler.  Raises ``ProxyError`` (rendered by the proxy)."""
        ctx.mode = MODE
        route, path_id, raw_query = self._route(request)
        event = KeyEvent("http", route.operation, request_id=ctx.request_id)
        event.source_ip = request.remote
        try:
            answer = await self._serve(route, path_id, raw_query, request, ctx, event)
        except ProxyError as exc:
            event.failed(exc)
            await self.service.audit(event)
            raise
        except Exception:
            event.failed(ProxyError("internal error"))
            await self.service.audit(event)
            raise
        await self.service.audit(event)
        ctx.status = 200
        return json_response(answer, headers=self._headers(ctx))

    async def _serve(
        self,
        route: Route,
        path_id: str,
        raw_query: str,
        request: Request,
        ctx: RequestContext,
        event: KeyEvent,
    ) -> dict[str, object]:
        _check_declared_length(request, route.max_body)
        query = parse_query(raw_query, route.params)
        key_policy: KeyPolicy | None = None
        body = b""
        if route.authenticated:
            endpoint, body = await self.service.proxy.authenticate(request, ctx, route.max_body)
            event.account, key_policy = endpoint.cloud_account_name, endpoint.key_policy
        if len(body) > route.max_body:
            raise PayloadTooLarge(f"this operation takes at most {route.max_body} body bytes")
        ctx.action = f"keyservice:{route.operation}"
        call = Call(request, ctx, key_policy, body, path_id, query)
        return await route.handler(self, call, event)

    def _route(self, request: Request) -> tuple[Route, str, str]:
        """The route, the (decoded) id after it and the raw query.  Raises
        ``UnknownOperation``, ``MethodNotAllowed``, ``InvalidArgument``."""
        raw_path, _, raw_query = request.raw_path.partition("?")
        if not raw_path.startswith(self.prefix + "/"):
            raise UnknownOperation("no such key-service operation")
        name, slash, rest = raw_path[len(self.prefix) + 1 :].partition("/")
        route = self._routes.get((request.method, name))
        if route is None:
            if name in self._names:
                raise MethodNotAllowed(f"{request.method} is not allowed on '{name}'")
            raise UnknownOperation("no such key-service operation")
        if slash and not route.with_id:
            raise UnknownOperation("no such key-service operation")
        return route, _path_id(rest) if route.with_id else "", raw_query

    def _headers(self, ctx: RequestContext) -> dict[str, str]:
        return {
            "Cache-Control": "no-store",
            "X-Mcdn-Proxy-Version": __version__,
            "X-Mcdn-Request-Id": ctx.reply_id,
            "X-Keybroker-Request-Id": ctx.request_id,
        }


# ----------------------------------------------------------------------- parsing


def _check_declared_length(request: Request, limit: int) -> None:
    """Refuse a declared body over the route's limit before reading any of it."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"this operation takes at most {limit} body bytes")


def _path_id(raw: str) -> str:
    """The id in the path, percent-decoded once (strict UTF-8).  Raises ``InvalidArgument``."""
    if not raw:
        raise InvalidArgument("a key id is required in the path")
    try:
        return urllib.parse.unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("the key id in the path is not UTF-8") from None


def parse_query(raw: str, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters, each at most once, only ``allowed`` ones.  Raises
    ``InvalidArgument``."""
    try:
        pairs = urllib.parse.parse_qsl(
            raw, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=16
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("the query string cannot be parsed") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidArgument(f"unknown query parameter {_clip(name)!r} (known: {known})")
        if name in out:
            raise InvalidArgument(f"query parameter {name!r} is given twice")
        out[name] = value
    return out


def parse_json(body: bytes, *, required: set[str], optional: set[str]) -> dict[str, object]:
    """A JSON object with exactly these fields.  Raises ``InvalidArgument``: malformed JSON,
    not an object, a field given twice (at any depth), a missing or unknown field."""
    if not body:
        raise InvalidArgument("a JSON object body is required")
    try:
        doc = json.loads(
            body.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_fields
        )
    except _DuplicateField:
        raise InvalidArgument("a field is given more than once") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("the body must be a JSON object")
    for name in doc:
        if name not in required and name not in optional:
            raise InvalidArgument(f"unknown field {_clip(name)!r}")
    for name in sorted(required):
        if name not in doc:
            raise InvalidArgument(f"field {name!r} is required")
    return doc


class _DuplicateField(Exception):
    """A JSON object names one field twice (readers disagree on which value counts)."""


def _unique_fields(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise _DuplicateField
    return doc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _size(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise InvalidArgument("size must be a decimal integer")
    return int(text)


def _limit(text: str | None) -> int:
    if text is None:
        return MAX_LIST
    if not text.isascii() or not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= MAX_LIST:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIST}")
    return int(text)


def _flag(query: dict[str, str], name: str, *, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value in ("true", "false"):
        return value == "true"
    raise InvalidArgument(f"{name} must be true or false")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidArgument("field 'blob' must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("field 'blob' is not valid base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dek_answer(key_id: str, dek: bytes, *, created: bool) -> dict[str, object]:
    return {"id": key_id, "size": len(dek), "plaintext": _b64(dek), "created": created}


def _clip(text: str, limit: int = 40) -> str:
    flat = "".join(c if c.isprintable() else "?" for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
