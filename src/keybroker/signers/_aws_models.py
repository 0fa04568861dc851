"""How each AWS service reads the operation of a request, from botocore's service models.

The data file ``data/aws_services.json.gz`` is generated from botocore's models by
``scripts/gen_aws_services.py`` (botocore is only an optional extra of keybroker, so its models
are not read at run time).  It is keyed by *signing name*, the service of a SigV4 credential
scope, which AWS checks against the endpoint; several models may share one signing name (``s3``
holds S3 and S3 Control), so each entry is the union of their protocols:

* ``json`` / ``cbor``: target prefix -> operation names;
* ``query``: operation names read from ``Action=`` (query and ec2 protocols, and JSON services
  that still answer query clients, ``awsQueryCompatible``);
* ``rest``: operations read from the method, the path and the query (``RestOperation``).

A signing name the file does not know has no entry: its requests stay unclassified.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["RestOperation", "ServiceModel", "botocore_version", "service_model"]

_DATA = "aws_services.json.gz"
_LABEL = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True, slots=True)
class RestOperation:
    """One REST operation: it matches when the method is ``method``, the path matches
    ``path`` (labels ``{X}`` one segment, ``{X+}`` one or more), and the query has every
    name of ``query`` (with its value, for ``name=value``) and the headers every name of
    ``headers``.  ``literal`` counts the template's literal characters: the longer, the more
    specific the path."""

    name: str
    method: str
    path: re.Pattern[str]
    literal: int
    query: frozenset[str]
    headers: frozenset[str]
    #: query and header constraints together, to compare how specific two operations are
    constraints: frozenset[str]


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """The operations of one signing name, by protocol."""

    json: dict[str, frozenset[str]]
    cbor: dict[str, frozenset[str]]
    query: frozenset[str]
    #: REST operations by method, then by one of their constraints (``?name``, ``?name=value``
    #: or ``h:header``; "" for none): a request can only match the operations filed under ""
    #: or under a constraint it meets
    rest: dict[str, dict[str, tuple[RestOperation, ...]]]


@cache
def _raw() -> dict[str, object]:
    blob = resources.files("keybroker.signers").joinpath("data", _DATA).read_bytes()
    loaded: dict[str, object] = json.loads(gzip.decompress(blob))
    return loaded


def botocore_version() -> str:
    """The botocore version the data file was generated from."""
    return str(_raw()["botocore"])


@cache
def service_model(signing_name: str) -> ServiceModel | None:
    """The model of ``signing_name``, or ``None`` for a name botocore does not know."""
    services = _raw()["services"]
    if not isinstance(services, dict):
        return None
    entry = services.get(signing_name)
    if not isinstance(entry, dict):
        return None
    rest: dict[str, dict[str, list[RestOperation]]] = {}
    for row in entry.get("rest", ()):
        op = _rest(*row)
        key = min(op.constraints) if op.constraints else ""
        rest.setdefault(op.method, {}).setdefault(key, []).append(op)
    return ServiceModel(
        {p: frozenset(n) for p, n in entry.get("json", {}).items()},
        {p: frozenset(n) for p, n in entry.get("cbor", {}).items()},
        frozenset(entry.get("query", ())),
        {m: {k: tuple(ops) for k, ops in by.items()} for m, by in rest.items()},
    )


def _rest(method: str, uri: str, query: list[str], headers: list[str], name: str) -> RestOperation:
    path, _, literal_query = uri.partition("?")
    wanted = set(query)
    for part in literal_query.split("&"):
        if part and not part.startswith("x-id="):  # a hint for routers; S3 ignores it
            wanted.add(part)
    pattern, literal, pos = [], 0, 0
    for match in _LABEL.finditer(path):
        text = path[pos : match.start()]
        pattern.append(re.escape(text))
        literal += len(text)
        pattern.append(".+" if match[1].endswith("+") else "[^/]+")
        pos = match.end()
    pattern.append(re.escape(path[pos:]))
    literal += len(path) - pos
    names = frozenset(h.lower() for h in headers)
    return RestOperation(
        name,
        method.upper(),
        re.compile("".join(pattern)),
        literal,
        frozenset(wanted),
        names,
        frozenset({*("?" + q for q in wanted), *("h:" + h for h in names)}),
    )
