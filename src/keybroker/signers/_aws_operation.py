"""What an AWS service will execute for a request, read the way the service reads it.

The protocol of the signing name (from botocore's models, :mod:`._aws_models`) decides where
the operation is:

* JSON protocol: ``X-Amz-Target: {TargetPrefix}.{Operation}``, with one of the service's own
  target prefixes; Smithy RPC v2 CBOR: the path ``/service/{TargetPrefix}/operation/{Op}``;
* query and ec2 protocols: ``Action`` in the query or in the form-encoded body; two different
  values (query against body, or repeated) are refused (400);
* REST protocols (S3 above all): the method, the path and the query's sub-resources, matched
  against the operations' ``requestUri`` — S3 addresses read by :mod:`._s3_address`.

Only the readings of the service's own protocols count: a header or parameter the service
ignores (``X-Amz-Target`` on S3, ``Action=`` on a JSON service) changes nothing.  When a signing
name has several protocols and the request carries more than one reading, they must agree
(400 otherwise).  An unknown signing name, an unknown target prefix or an ambiguous REST match
leaves the request unclassified (action ``None``, never read-only).  ``read_only`` needs a
known operation with a reading name (:mod:`._read_actions`), and for REST a safe method.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from keybroker.errors import MalformedRequest
from keybroker.signers._action_params import query_actions
from keybroker.signers._aws_models import RestOperation, ServiceModel, service_model
from keybroker.signers._read_actions import is_read_action
from keybroker.signers.base import Operation, SigningRequest
from keybroker.signers.s3_address import parse_s3_address
from keybroker.signers.sigv4.canonical import decode_query

__all__ = ["aws_operation"]

_SAFE = frozenset({"GET", "HEAD"})
_RPC_METHODS = frozenset({"GET", "HEAD", "POST"})
_S3_FAMILY = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})
_S3_CONTROL_PATH = "/v20180820/"
_ACCOUNT_HEADER = "x-amz-account-id"
_CBOR_PATH = re.compile(r"/service/([^/]+)/operation/([^/]+)")


class _Unclassified(Exception):
    """A reading that exists but names no single operation (ambiguous REST match)."""


def aws_operation(req: SigningRequest, service: str | None, body: bytes | None) -> Operation:
    """The operation an AWS request for the signing name ``service`` executes.

    ``req.host`` is the host the request goes to (routing and classification agree on the S3
    bucket through it).  Raises ``MalformedRequest`` when the request names two operations.
    """
    name = "s3" if service in _S3_FAMILY else service
    model = service_model(name) if name else None
    if model is None:
        return Operation(service, None, None, False)
    resource, path, control = None, req.path, None
    if name == "s3":
        # S3 Control (an s3-control host, or /v20180820/ on any host but a bucket's, as
        # routing sends it) keeps its path; S3 reads the bucket and key
        address = parse_s3_address(req.host, req.path)
        control = (address.label or "").startswith("s3-control") or (
            not address.virtual and req.path.startswith(_S3_CONTROL_PATH)
        )
        if not control:
            resource, path = address.resource(), address.path()
    try:
        readings = _readings(model, req, path, body, s3=name == "s3", control=control)
    except _Unclassified:
        return Operation(service, None, resource, False)
    found = {r[0] for r in readings}
    if len(found) > 1:
        raise MalformedRequest("the request names more than one operation")
    if not found:
        return Operation(service, None, resource, False)
    action = found.pop()
    read_only = all(known for _, known, _ in readings) and is_read_action(action)
    method = req.method.upper()
    if any(rest for _, _, rest in readings):
        read_only = read_only and method in _SAFE
    return Operation(service, action, resource, read_only and method in _RPC_METHODS)


def _readings(
    model: ServiceModel,
    req: SigningRequest,
    path: str,
    body: bytes | None,
    *,
    s3: bool,
    control: bool | None = None,
) -> list[tuple[str, bool, bool]]:
    """Every ``(operation, known to the model, REST)`` the request presents to the service's
    protocols."""
    found: list[tuple[str, bool, bool]] = []
    if model.json:
        found.extend(_json_reading(model, req))
    if model.cbor:
        match = _CBOR_PATH.fullmatch(req.path)
        if match and match[1] in model.cbor:
            found.append((match[2], match[2] in model.cbor[match[1]], False))
    if model.query:
        actions = query_actions(req, body)
        if actions is None:
            raise _Unclassified
        found.extend((action, action in model.query, False) for action in actions)
    if model.rest:
        rest = _rest_reading(model.rest, req, _normalised(path, dots=not s3), control)
        if rest is not None:
            found.append((rest, True, True))
    return found


def _json_reading(model: ServiceModel, req: SigningRequest) -> Iterable[tuple[str, bool, bool]]:
    targets = req.headers.getall("X-Amz-Target", [])
    if len(targets) > 1:
        raise MalformedRequest("X-Amz-Target is repeated")
    if targets:
        prefix, _, name = targets[0].strip().rpartition(".")
        prefix = prefix.strip()
        if prefix in model.json and name:
            yield name, name in model.json[prefix], False


def _normalised(path: str, *, dots: bool) -> str:
    """``path`` as a REST service routes it: each segment percent-decoded (a decoded ``/``
    stays ``%2F``, inside its segment), and with ``dots`` the ``.``/``..`` segments resolved,
    as every AWS service but S3 does (an S3 key keeps them)."""
    if "%" not in path and not (dots and "." in path):
        return path
    out: list[str] = []
    for segment in path.split("/"):
        name = unquote(segment).replace("/", "%2F")
        if dots and name == ".":
            continue
        if dots and name == "..":
            if len(out) > 1:
                out.pop()
            continue
        out.append(name)
    return "/".join(out) or "/"


def _rest_reading(
    ops: dict[str, dict[str, tuple[RestOperation, ...]]],
    req: SigningRequest,
    path: str,
    control: bool | None = None,
) -> str | None:
    """The REST operation the request matches.  ``control`` (S3 only): the request goes to
    S3 Control, so only its operations are candidates — whether or not it carries the
    ``x-amz-account-id`` header they name (the account is also in an S3 Control host), a
    ``/v20180820/...`` path is never read as an S3 object key — and otherwise none of them."""
    by_query = ops.get(req.method.upper())
    if not by_query:
        return None
    pairs = decode_query(req.query) if req.query else []
    names = {k for k, _ in pairs} | {f"{k}={v}" for k, v in pairs}
    # S3 also takes x-amz-* headers as query parameters (presigned URLs hoist them there):
    # an x-amz-copy-source in the query makes a copy as much as the header does
    headers = {h.lower() for h in req.headers}
    headers.update(k.lower() for k, _ in pairs if k.lower().startswith("x-amz-"))
    if control:
        headers.add(_ACCOUNT_HEADER)
    candidates = [*by_query.get("", ())]
    for name in names:
        candidates.extend(by_query.get("?" + name, ()))
    for header in headers:
        candidates.extend(by_query.get("h:" + header, ()))
    if control is not None:
        candidates = [
            op for op in candidates if op.path.pattern.startswith(_S3_CONTROL_PATH) is control
        ]
    matches = [
        op
        for op in candidates
        if op.query <= names and op.headers <= headers and op.path.fullmatch(path)
    ]
    if not matches:
        return None
    literal = max(op.literal for op in matches)
    matches = [op for op in matches if op.literal == literal]
    best = [m for m in matches if not any(m.constraints < o.constraints for o in matches)]
    if len({op.name for op in best}) != 1:
        raise _Unclassified
    return best[0].name
