#!/usr/bin/env python3
"""Regenerate src/keybroker/signers/data/aws_services.json.gz from botocore's service models.

For every AWS signing name (the service in a SigV4 credential scope) it records how the
services signed under that name read the operation of a request:

* ``json`` / ``cbor``: target prefix -> operation names (``X-Amz-Target: Prefix.Op``, or the
  ``/service/Prefix/operation/Op`` path of the Smithy RPC v2 CBOR protocol);
* ``query``: the operation names read from ``Action=`` (query and ec2 protocols, and the JSON
  services marked ``awsQueryCompatible``, which still answer query-protocol clients);
* ``rest``: ``[method, requestUri, required query names, required header names, operation]``.

Run it with the botocore to follow installed:  python scripts/gen_aws_services.py
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import botocore
import botocore.session

OUT = Path(__file__).resolve().parent.parent / "src/keybroker/signers/data/aws_services.json.gz"


def _required(model: dict[str, Any], shape_name: str | None, location: str) -> list[str]:
    if not shape_name:
        return []
    shape = model["shapes"][shape_name]
    required = set(shape.get("required", []))
    names = []
    for member, spec in shape.get("members", {}).items():
        if member in required and spec.get("location") == location:
            names.append(spec.get("locationName", member))
    return sorted(names)


def _service(model: dict[str, Any], entry: dict[str, Any]) -> None:
    meta = model["metadata"]
    protocols = list(meta.get("protocols") or [meta["protocol"]])
    if "awsQueryCompatible" in meta and "query" not in protocols:
        protocols.append("query")  # SQS: older clients still send the query protocol
    ops = model["operations"]
    for protocol in protocols:
        if protocol in ("json", "smithy-rpc-v2-cbor"):
            kind = "json" if protocol == "json" else "cbor"
            names = entry.setdefault(kind, {}).setdefault(meta["targetPrefix"], [])
            names.extend(sorted(ops))
        elif protocol in ("query", "ec2"):
            entry.setdefault("query", []).extend(sorted(ops))
        elif protocol in ("rest-json", "rest-xml"):
            for name in sorted(ops):
                op = ops[name]
                shape = op.get("input", {}).get("shape")
                row = [
                    op["http"]["method"],
                    op["http"]["requestUri"],
                    _required(model, shape, "querystring"),
                    _required(model, shape, "header"),
                    name,
                ]
                entry.setdefault("rest", []).append(row)
                entry.setdefault("_rank", {})[name] = _rank(op)
        else:
            raise SystemExit(f"unknown protocol {protocol!r}")


def _rank(op: dict[str, Any]) -> int:
    """Which of two operations sent as the very same request to keep: 0 the usual one,
    1 one addressed to S3 Express's control endpoint, 2 a deprecated alias."""
    if op.get("deprecated"):
        return 2
    if op.get("staticContextParams", {}).get("UseS3ExpressControlEndpoint"):
        return 1
    return 0


def _request_key(row: list[Any]) -> str:
    method, uri, query, headers, _ = row
    path, _, literal = uri.partition("?")
    path = re.sub(r"\{[^}]*\+\}", "{+}", re.sub(r"\{[^}+]*\}", "{}", path))
    wanted = sorted({*query, *(p for p in literal.split("&") if p and not p.startswith("x-id="))})
    return json.dumps([method, path, wanted, sorted(headers)])


def _untie(rows: list[list[Any]], rank: dict[str, int]) -> list[list[Any]]:
    """Of operations sent as the same request (a deprecated alias, S3 Express's
    ListDirectoryBuckets beside ListBuckets), keep the best ranked; a tie that remains is
    kept whole and the request stays unclassified."""
    groups: dict[str, list[list[Any]]] = {}
    for row in rows:
        groups.setdefault(_request_key(row), []).append(row)
    kept = []
    for group in groups.values():
        best = min(rank[r[4]] for r in group)
        kept.extend(r for r in group if rank[r[4]] == best)
    return kept


def build() -> dict[str, Any]:
    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    services: dict[str, dict[str, Any]] = {}
    for name in sorted(session.get_available_services()):
        model = loader.load_service_model(name, "service-2")
        meta = model["metadata"]
        signing = meta.get("signingName") or meta["endpointPrefix"]
        _service(model, services.setdefault(signing, {}))
    for entry in services.values():
        for kind in ("json", "cbor"):
            for prefix, names in entry.get(kind, {}).items():
                entry[kind][prefix] = sorted(set(names))
        if "query" in entry:
            entry["query"] = sorted(set(entry["query"]))
        rank = entry.pop("_rank", {})
        if "rest" in entry:
            rows = _untie(entry["rest"], rank)
            entry["rest"] = sorted({json.dumps(r): r for r in rows}.values())
    return {"botocore": botocore.__version__, "services": services}


def main() -> int:
    data = json.dumps(build(), sort_keys=True, separators=(",", ":")).encode()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(gzip.compress(data, 9, mtime=0))
    print(f"{OUT.name}: {len(data)} bytes, {OUT.stat().st_size} compressed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
