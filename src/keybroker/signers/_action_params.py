"""The ``Action`` parameter of RPC-style APIs, read as their gateways read it: in the query
and in a form-encoded body, under any spelling of its name.

AWS query services, Kingsoft and Volcengine name the operation in an ``Action`` parameter; a
request naming two (query against body, ``Action`` against ``action``, or repeated) is refused
rather than guessed, and a body the proxy streams without reading may name another, so such a
request is unclassified.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from keybroker.errors import MalformedRequest
from keybroker.signers._read_actions import is_read_action
from keybroker.signers.base import Operation, ParsedAuth, SigningRequest
from keybroker.signers.sigv4.canonical import decode_query

__all__ = ["body_unseen", "query_actions", "rpc_operation"]


def query_actions(
    req: SigningRequest, body: bytes | None, *, form_only: bool = False
) -> set[str] | None:
    """The ``Action`` of the query and the body read as a form (at most one value; the
    parameter's name is matched case-insensitively), ``None`` when the request has a body the
    proxy does not hold (streamed), which may name another.  ``form_only``: only a body sent
    as ``application/x-www-form-urlencoded`` is read (AWS query services read any body).
    Raises ``MalformedRequest`` for two values."""
    # trimmed, "+" read as a space too: a gateway that reads " TerminateInstances" or
    # "+TerminateInstances" as TerminateInstances must not let it escape a deny rule
    values = {_trim(v) for k, v in decode_query(req.query) if k.lower() == "action"}
    form = "x-www-form-urlencoded" in req.headers.get("Content-Type", "").lower()
    if body and (form or not form_only):
        # a byte that is not ASCII (or not UTF-8) hides nothing: the gateway still reads the
        # Action beside it
        text = body.decode("utf-8", "surrogateescape")
        values.update(
            _trim(v) for k, v in parse_qsl(text, keep_blank_values=True) if k.lower() == "action"
        )
    elif body is None and (form or not form_only) and body_unseen(req):
        return None
    if len(values) > 1:
        raise MalformedRequest("the request names more than one Action")
    return {v for v in values if v}


def _trim(value: str) -> str:
    return value.replace("+", " ").strip()


def body_unseen(req: SigningRequest) -> bool:
    """True when the request has a body the proxy does not hold."""
    length = req.headers.get("Content-Length", "").strip()
    return "Transfer-Encoding" in req.headers or length not in ("", "0")


def rpc_operation(req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
    """The operation of an RPC API whose ``parse`` read the action where the vendor reads it
    (``auth.action``: Tencent's ``X-TC-Action``, Alibaba's ``Action``/``x-acs-action``,
    UCloud's ``Action``).  Another ``Action`` in the query or a form body is refused (400);
    a request to another path than ``/`` is a REST call (Alibaba ROA), whose operation the
    method and path decide: unclassified, read-only only with GET/HEAD; a form body the proxy
    streams unread leaves the request unclassified.
    Raises ``MalformedRequest``."""
    method = req.method.upper()
    if req.path not in ("", "/"):
        return Operation(auth.service, None, None, method in ("GET", "HEAD"))
    action = auth.action
    others = query_actions(req, body, form_only=True)
    if others is None:
        action = None
    elif others - {action}:
        raise MalformedRequest("the request names more than one Action")
    read = is_read_action(action) and method in ("GET", "HEAD", "POST")
    return Operation(auth.service, action, None, read)
