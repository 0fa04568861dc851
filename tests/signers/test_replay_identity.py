"""The replay key is what a signature means, not how it is spelled: for every signer, every
respelling of an SDK-signed request that the parser accepts and that verifies has the replay
key of the request as the SDK sent it; another signature (other time, scope, secret, request)
has another key.

Respellings are the ones an attacker holding a captured request can make without the secret:
the Authorization value's separators, component order and hex case, Base64 padding and
unused bits, the query's order, ``&`` padding and percent-encoding of unreserved characters,
and (where the body is not signed) another body.  Each vendor lists the respellings its parser
must accept; the rest are drawn too, and must either be refused or keep the key."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlencode

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.proxy.checks import replay_key
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

keys = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=8)
values = st.text(string.ascii_letters + string.digits + "-_.~", max_size=8)
params = st.dictionaries(keys, values, min_size=2, max_size=4)
secret_keys = st.text(string.ascii_letters + string.digits, min_size=8, max_size=30)


@dataclass
class Case:
    vendor: str
    req: SigningRequest
    cred: Credential
    body: bytes | None


Maker = Callable[[dict[str, str], str, datetime], Case]


# ---------------------------------------------------------------------- SDK-signed requests


def _aws(service: str, presigned: bool = False) -> Maker:
    def make(query: dict[str, str], sk: str, when: datetime) -> Case:
        host = f"{service}.us-east-1.amazonaws.com"
        url = f"https://{host}/obj?{urlencode(query)}"
        body = None if presigned else b"data"
        method = "GET" if presigned else "PUT" if service == "s3" else "POST"
        req = AWSRequest(method=method, url=url, data=body)
        creds = Credentials("AKIDREPLAYPROP", sk)
        if presigned:
            auth: SigV4Auth = S3SigV4QueryAuth(creds, service, "us-east-1", expires=3600)
        else:
            auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(creds, service, "us-east-1")
        # the SDK's own clock, set to ``when``
        with mock.patch("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None)):
            auth.add_auth(req)
        prepared = req.prepare()
        path, _, qs = prepared.url.split(host, 1)[1].partition("?")
        headers = CIMultiDict({k: v for k, v in prepared.headers.items() if k != "Content-Length"})
        sreq = SigningRequest(req.method, host, path, qs, headers)
        return Case("aws", sreq, Credential("AKIDREPLAYPROP", Secret(sk)), body)

    return make


def _ksyun(query: dict[str, str], sk: str, when: datetime) -> Case:
    case = _aws("kec")(query, sk, when)
    return Case("ksyun", case.req, case.cred, case.body)


def _volcengine(query: dict[str, str], sk: str, when: datetime) -> Case:
    from volcenginesdkcore.signv4 import SignerV4

    del when  # the SDK signs at its own now; other keys come from other secrets
    headers = {"Host": "open.volcengineapi.com", "Content-Type": "application/json"}
    pairs = list(query.items())
    SignerV4.sign("/", "POST", headers, '{"a":1}', None, pairs, "AKprop", sk, "cn-beijing",
                  "ecs", None)  # fmt: skip
    req = SigningRequest("POST", "open.volcengineapi.com", "/", urlencode(pairs),
                         CIMultiDict(headers))  # fmt: skip
    return Case("volcengine", req, Credential("AKprop", Secret(sk)), b'{"a":1}')


def _tencent(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.tencent_upstream import sdk_client, sdk_signed

    client = sdk_client("cvm.tencentcloudapi.com", "AKIDprop", sk, method="POST")
    req = sdk_signed(client, "RunThings", dict(query), int(when.timestamp()))
    return Case("tencent", req, Credential("AKIDprop", Secret(sk)), req.body or b"")


def _tencent_v1(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.tencent_upstream import sdk_client, sdk_signed

    client = sdk_client("cvm.tencentcloudapi.com", "AKIDprop", sk, method="GET",
                        sign_method="HmacSHA256")  # fmt: skip
    req = sdk_signed(client, "RunThings", dict(query), int(when.timestamp()))
    return Case("tencent", req, Credential("AKIDprop", Secret(sk)), b"")


def _aliyun_rpc(query: dict[str, str], sk: str, when: datetime) -> Case:
    from alibabacloud_tea_openapi.utils import Utils

    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    all_params = {**query, "AccessKeyId": "LTAIprop", "SignatureMethod": "HMAC-SHA1",
                  "SignatureVersion": "1.0", "SignatureNonce": "n-1",
                  "Timestamp": stamp}  # fmt: skip
    all_params["Signature"] = Utils.get_rpcsignature(all_params, "GET", sk)
    req = SigningRequest("GET", "ecs.aliyuncs.com", "/", urlencode(all_params), CIMultiDict())
    return Case("aliyun", req, Credential("LTAIprop", Secret(sk)), b"")


def _aliyun_acs3(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.aliyun_upstream import sdk_acs3_authorization

    body = b'{"a":1}'
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": "ecs.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": "n-1",
        "content-type": "application/json",
        "x-acs-content-sha256": payload,
    }
    headers["Authorization"] = sdk_acs3_authorization(
        "POST", "/", query, headers, payload, "LTAIprop", sk
    )
    req = SigningRequest("POST", "ecs.aliyuncs.com", "/", urlencode(query), CIMultiDict(headers),
                         body=body)  # fmt: skip
    return Case("aliyun", req, Credential("LTAIprop", Secret(sk)), body)


def _huawei(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.huawei_upstream import sdk_sign

    cred = Credential("HPUAprop", Secret(sk))
    req, raw = sdk_sign(cred, method="POST", query=list(query.items()), body='{"a":1}',
                        content_type="application/json", when=when)  # fmt: skip
    return Case("huawei", req, cred, raw)


def _baidu(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.baidu_upstream import sdk_sign

    cred = Credential("bceprop", Secret(sk))
    req, raw = sdk_sign(cred, method="POST", params=query, body='{"a":1}', when=when)
    return Case("baidu", req, cred, raw)


def _jingdong(query: dict[str, str], sk: str, when: datetime) -> Case:
    from tests.signers.jingdong_upstream import sdk_sign

    host = "vm.jdcloud-api.com"
    qs = urlencode(query)
    headers = {"Content-Type": "application/json"}
    sdk_sign("JDCLOUD2-HMAC-SHA256", "POST", f"https://{host}/v1/x?{qs}", headers, '{"a":1}',
             "JDC_AK", sk, region="cn-north-1", service="vm",
             x_date=when.strftime("%Y%m%dT%H%M%SZ"), nonce="n-1")  # fmt: skip
    req = SigningRequest("POST", host, "/v1/x", qs, CIMultiDict(headers))
    return Case("jingdong", req, Credential("JDC_AK", Secret(sk)), b'{"a":1}')


def _akamai(query: dict[str, str], sk: str, when: datetime) -> Case:
    import requests
    from akamai.edgegrid import EdgeGridAuth

    del when  # the SDK signs at its own now
    host = "akab-prop.luna.akamaiapis.net"
    auth = EdgeGridAuth(client_token="ct-prop", client_secret=sk, access_token="at-prop")
    prepared = requests.Request(
        "POST", f"https://{host}/papi/v1/x", params=query, data=b'{"a":1}', auth=auth
    ).prepare()
    path, _, qs = str(prepared.url).split(host, 1)[1].partition("?")
    req = SigningRequest("POST", host, path, qs, CIMultiDict(prepared.headers))
    cred = Credential("", Secret(""), access_token=Secret("at-prop"),
                      client_token=Secret("ct-prop"), client_secret=Secret(sk))  # fmt: skip
    return Case("akamai", req, cred, b'{"a":1}')


def _qiniu(query: dict[str, str], sk: str, when: datetime) -> Case:
    from qiniu import QiniuMacAuth

    form = "application/x-www-form-urlencoded"
    qs = urlencode(query)
    url = f"https://rs.qiniuapi.com/stat/x?{qs}"
    headers = {"Content-Type": form, "X-Qiniu-Date": when.strftime("%Y%m%dT%H%M%SZ")}
    mac = QiniuMacAuth("AKprop", sk)
    token = mac.token_of_request("POST", None, url, mac.qiniu_headers(headers), form, "a=1")
    headers["Authorization"] = f"Qiniu {token}"
    req = SigningRequest("POST", "rs.qiniuapi.com", "/stat/x", qs, CIMultiDict(headers))
    return Case("qiniu", req, Credential("AKprop", Secret(sk)), b"a=1")


def _wangsu(query: dict[str, str], sk: str, when: datetime, method: str = "GET") -> Case:
    """A ``CNC-HMAC-SHA256`` request (GET: the query is signed; POST: the body is)."""
    from tests.signers.wangsu_upstream import sdk_aksk_headers

    host = "open.chinanetcenter.com"
    uri = f"/api/v1/refresh?{urlencode(query)}"
    body = '{"a":1}' if method == "POST" else None
    headers = sdk_aksk_headers(method, uri, host, body, "wsAK", sk, int(when.timestamp()))
    path, _, qs = uri.partition("?")
    req = SigningRequest(method, host, path, qs, CIMultiDict(headers))
    return Case("wangsu", req, Credential("wsAK", Secret(sk)), body.encode() if body else None)


# ---------------------------------------------------------------------- respellings


Respell = Callable[[SigningRequest, st.DataObject], SigningRequest]
_HEX_SIG = re.compile(r"(Signature=)([0-9a-f]{40,64})")
_FIELDS = re.compile(r"^(\S+) (.*)$", re.S)


def _copy(req: SigningRequest, **changes: object) -> SigningRequest:
    out = req.copy()
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def _auth_fields(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """``ALG A=1, B=2, C=3``: components reordered, other comma separators, a trailing one."""
    value = req.headers.get("Authorization", "")
    found = _FIELDS.match(value)
    if not found or "=" not in found.group(2) or ";signature=" in value:
        return req
    parts = [p.strip() for p in re.split(r",\s*", found.group(2)) if p.strip()]
    order = data.draw(st.permutations(parts))
    sep = data.draw(st.sampled_from([",", ", ", ",\t", " , ", ",  "]))
    out = _copy(req)
    out.headers["Authorization"] = f"{found.group(1)} {sep.join(order)}"
    return out


def _hex_case(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """The signature's hex digits in upper case (header or query)."""
    out = _copy(req)
    value = out.headers.get("Authorization")
    if value is not None:
        out.headers["Authorization"] = _HEX_SIG.sub(lambda m: m[1] + m[2].upper(), value)
    out.query = re.sub(r"(Signature=)([0-9a-f]{40,64})", lambda m: m[1] + m[2].upper(), out.query)
    return out


def _query_order(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    pieces = [p for p in req.query.split("&") if p]
    return _copy(req, query="&".join(data.draw(st.permutations(pieces))))


def _query_padding(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    pieces = req.query.split("&")
    padded: list[str] = []
    for piece in pieces:
        padded += [""] * data.draw(st.integers(0, 2)) + [piece]
    return _copy(req, query="&".join(padded) + "&" * data.draw(st.integers(0, 2)))


def _query_percent(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """Percent-encode some unreserved characters (``A`` -> ``%41``)."""
    chars = list(req.query)
    escaped = {i for m in re.finditer(r"%[0-9A-Fa-f]{2}", req.query) for i in range(*m.span())}
    spots = [i for i, c in enumerate(chars) if c.isalnum() and i not in escaped]
    if not spots:
        return req
    for i in data.draw(st.sets(st.sampled_from(spots), max_size=4)):
        chars[i] = f"%{ord(chars[i]):02X}" if data.draw(st.booleans()) else f"%{ord(chars[i]):02x}"
    return _copy(req, query="".join(chars))


def _b64_parts(req: SigningRequest) -> tuple[str, str, str] | None:
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    ak, colon, sig = token.partition(":")
    return (scheme, ak, sig) if colon else None


def _b64_padding(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """Qiniu's URL-safe Base64 signature with or without its ``=``."""
    parts = _b64_parts(req)
    if parts is None:
        return req
    scheme, ak, sig = parts
    out = _copy(req)
    padded = sig.rstrip("=") + ("=" if data.draw(st.booleans()) else "")
    out.headers["Authorization"] = f"{scheme} {ak}:{padded}"
    return out


def _b64_bits(req: SigningRequest, data: st.DataObject) -> SigningRequest:
    """The Base64 signature's last character with its unused bits set: the same bytes."""
    parts = _b64_parts(req)
    if parts is None:
        return req
    scheme, ak, sig = parts
    text = sig.rstrip("=")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(text[-1]) | data.draw(st.integers(0, 3))
    out = _copy(req)
    out.headers["Authorization"] = f"{scheme} {ak}:{text[:-1]}{alphabet[last]}="
    return out


ALL: list[Respell] = [
    _auth_fields,
    _hex_case,
    _query_order,
    _query_padding,
    _query_percent,
    _b64_padding,
    _b64_bits,
]

#: vendor case -> (maker, the respellings its parser must accept, and verify)
_QUERY = [_query_order, _query_padding, _query_percent]
CASES: dict[str, tuple[Maker, list[Respell]]] = {
    "aws": (_aws("s3"), [_auth_fields, _hex_case, *_QUERY]),
    "aws-presigned": (_aws("s3", presigned=True), [_hex_case, *_QUERY]),
    "aws-sts": (_aws("sts"), [_auth_fields, _hex_case, *_QUERY]),
    "ksyun": (_ksyun, [_auth_fields, _hex_case, _query_padding, _query_percent]),
    "volcengine": (_volcengine, [_auth_fields, *_QUERY]),
    "tencent": (_tencent, [_auth_fields]),
    "tencent-v1": (_tencent_v1, _QUERY),
    "aliyun-rpc": (_aliyun_rpc, [_query_order, _query_padding]),
    "aliyun-acs3": (_aliyun_acs3, [_auth_fields, *_QUERY]),
    "huawei": (_huawei, [_auth_fields, *_QUERY]),
    "baidu": (_baidu, _QUERY),
    "jingdong": (_jingdong, [_auth_fields, _query_order, _query_padding]),
    "akamai": (_akamai, []),
    "qiniu": (_qiniu, [_b64_padding]),
    "wangsu": (_wangsu, [_auth_fields, _query_percent]),
}


def _key(case: Case, req: SigningRequest) -> bytes | None:
    """The replay key of ``req`` if the vendor's parser accepts it and it verifies."""
    signer = signers.get(case.vendor)
    try:
        auth = signer.parse(req)
        signer.verify(req, auth, case.cred, case.body)
    except (MalformedSignature, SignatureMismatch):
        return None
    return replay_key(signer, case.vendor, req, auth, case.body)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(query=params, sk=secret_keys, data=st.data())
def test_every_accepted_spelling_has_the_same_key(
    name: str, query: dict[str, str], sk: str, data: st.DataObject
) -> None:
    make, accepted = CASES[name]
    case = make(query, sk, WHEN)
    canonical = _key(case, case.req)
    assert canonical is not None, "the SDK's own request must verify"
    # the respellings this parser must accept, combined
    req = case.req
    for respell in data.draw(st.lists(st.sampled_from(accepted), max_size=4)) if accepted else []:
        req = respell(req, data)
    assert _key(case, req) == canonical
    # any respelling at all: refused, or the same key
    for respell in data.draw(st.lists(st.sampled_from(ALL), min_size=1, max_size=4)):
        req = respell(req, data)
        assert _key(case, req) in (None, canonical)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(query=params, sk=secret_keys, other=secret_keys, seconds=st.integers(1, 600))
def test_another_signature_has_another_key(
    name: str, query: dict[str, str], sk: str, other: str, seconds: int
) -> None:
    make, _ = CASES[name]
    base = make(query, sk, WHEN)
    key = _key(base, base.req)
    changed = [make({**query, "zz": "1"}, sk, WHEN)]
    if sk != other:
        changed.append(make(query, other, WHEN))
    if name not in ("volcengine", "akamai"):  # their SDKs sign at their own now
        changed.append(make(query, sk, WHEN + timedelta(seconds=seconds)))
    for case in changed:
        assert _key(case, case.req) not in (None, key)


def test_qiniu_refuses_a_non_canonical_base64_signature() -> None:
    """Setting the unused bits of the last Base64 character keeps the digest, but Qiniu's own
    server compares the text: such a spelling is refused as malformed, not verified."""
    case = _qiniu({"a": "1"}, "qiniu-sk-1", WHEN)
    parts = _b64_parts(case.req)
    assert parts is not None
    scheme, ak, sig = parts
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    text = sig.rstrip("=")
    spare = alphabet[alphabet.index(text[-1]) ^ 1]
    req = _copy(case.req)
    req.headers["Authorization"] = f"{scheme} {ak}:{text[:-1]}{spare}="
    with pytest.raises(MalformedSignature, match="not canonical"):
        signers.get("qiniu").parse(req)


def test_wangsu_post_query_is_part_of_the_key() -> None:
    """``CNC-HMAC-SHA256`` signs no POST query: two POSTs of one body to two queries in one
    second have one signature, and are still two requests; the same POST again is a replay."""
    a, b = (_wangsu({"x": v, "y": "1"}, "wangsu-sk-1", WHEN, "POST") for v in ("1", "2"))
    assert a.req.headers["Authorization"] == b.req.headers["Authorization"]
    again = _wangsu({"x": "1", "y": "1"}, "wangsu-sk-1", WHEN, "POST")
    key_a, key_b, key_again = _key(a, a.req), _key(b, b.req), _key(again, again.req)
    assert None not in (key_a, key_b) and key_a != key_b
    assert key_again == key_a


def test_an_unsigned_body_does_not_change_the_key() -> None:
    """An ``UNSIGNED-PAYLOAD`` upload's body is not in its signature, so not in its key."""

    class Unsigned(S3SigV4Auth):
        def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
            return False

    host = "bkt.s3.us-east-1.amazonaws.com"
    req = AWSRequest(method="PUT", url=f"https://{host}/k", data=b"a")
    Unsigned(Credentials("AKIDREPLAYPROP", "sk-prop-1"), "s3", "us-east-1").add_auth(req)
    headers = CIMultiDict({k: v for k, v in req.headers.items()})
    sreq = SigningRequest("PUT", host, "/k", "", headers)
    signer = signers.get("aws")
    auth = signer.parse(sreq)
    keys_ = {replay_key(signer, "aws", sreq, auth, body) for body in (None, b"a", b"b" * 99)}
    assert len(keys_) == 1
    assert hashlib.sha256(b"a").hexdigest() not in repr(auth)
