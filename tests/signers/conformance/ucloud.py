"""UCloud's SHA-1 parameter signature: signed by ucloud-sdk-python3, in the query, a form body
or a JSON body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict
from ucloud.core.auth import Credential as SdkCredential
from ucloud.core.typesystem import encoder

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    any_secrets,
    keys,
    load,
    text,
)

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: n not in ("PublicKey", "Signature")
)
params = st.dictionaries(names, text, min_size=1, max_size=6)
wheres = st.sampled_from(["query", "form", "json"])
JSON = "application/json"


def sdk_signed(p: dict[str, str], sk: str) -> dict[str, str]:
    """What the SDK's client sends: encoder-flattened parameters plus its Signature."""
    flat: dict[str, str] = encoder.encode(dict(p))
    flat["Signature"] = SdkCredential("pk", sk).verify_ac(flat)
    return flat


def render(flat: dict[str, str], where: str) -> SigningRequest:
    if where == "query":
        return SigningRequest("GET", "api.ucloud.cn", "/", urlencode(flat))
    ctype = JSON if where == "json" else "application/x-www-form-urlencoded"
    body = json.dumps(flat) if where == "json" else urlencode(flat)
    return SigningRequest(
        "POST", "api.ucloud.cn", "/", "", CIMultiDict({"Content-Type": ctype}), body=body.encode()
    )


def params_of(req: SigningRequest) -> dict[str, Any]:
    if not req.body:
        return dict(parse_qsl(req.query, keep_blank_values=True))
    if req.headers.get("Content-Type") == JSON:
        return encoder.encode(json.loads(req.body))  # type: ignore[no-any-return]
    return dict(parse_qsl(req.body.decode(), keep_blank_values=True))


def _where(req: SigningRequest) -> str:
    return "query" if not req.body else "json" if req.headers["Content-Type"] == JSON else "form"


def sign(p: dict[str, str], sk: str, where: str) -> Signed:
    return Signed(render(sdk_signed(p, sk), where), Credential("pk", Secret(sk)))


def _parameter(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One signed parameter's value changed, sent in the same place."""
    flat = params_of(signed.req)
    name = data.draw(
        st.sampled_from(sorted(n for n in flat if n not in ("PublicKey", "Signature")))
    )
    flat[name] += data.draw(st.sampled_from(["!", "0", "ü", " "]))
    return [Signed(render(flat, _where(signed.req)), signed.cred)]


param_names = st.sampled_from(["PublicKey", "Signature", "Action", "Region", "A.0", ""])
values = st.one_of(st.text(max_size=20), st.just("a" * 40), st.just("pk"))
query_garbage = st.builds(
    lambda pairs, junk: SigningRequest("GET", "h", "/", urlencode(pairs) + junk),
    st.lists(st.tuples(param_names, values), max_size=8),
    st.text(max_size=40),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=12,
)
body_garbage = st.builds(
    lambda body, ctype: SigningRequest(
        "POST", "h", "/", "", CIMultiDict({"Content-Type": ctype}), body=body
    ),
    st.binary(max_size=80) | json_values.map(lambda d: json.dumps(d).encode()),
    st.sampled_from([JSON, "application/x-www-form-urlencoded", "", "text/plain"]),
)

FORMS = [
    Form(
        "ucloud",
        "ucloud",
        st.builds(sign, params, any_secrets, wheres),
        reals=keys("real-pk", any_secrets),
        secrets=any_secrets,
        tampers={"parameter": _parameter},
        garbage={"query": Garbage(query_garbage), "body": Garbage(body_garbage)},
        examples=80,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    r = c["request"]
    req = SigningRequest(
        r["method"],
        r["host"],
        r["path"],
        r["query"],
        CIMultiDict(r["headers"]),
        body=r["body"].encode(),
    )
    cred = Credential(c["credential"]["access_key"], Secret(c["credential"]["secret_key"]))
    return Vector(
        "ucloud",
        c["name"],
        req,
        cred,
        req.body,
        parsed={"signed_at": None},
        resigned=lambda out: params_of(out)["Signature"],
        expected=c["expected"]["signature"],
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )


VECTORS = [_vector(c) for c in load("ucloud", "sdk.json") + load("ucloud", "doc.json")]
REPLAY: dict[str, Any] = {}  # its signature is a parameter: keyed on the request's spelling
