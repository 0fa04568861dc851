"""What an AWS service will execute (``AwsSigner.operation``), read as the service reads it.

Real SDK requests (botocore's own serialisation, signed as boto3 signs them) are classified
against botocore's operation names; the reproductions of the policy bypass (a header or
parameter the service ignores naming a read) are refused; hypothesis adds what the vendor
ignores to requests and checks that a policy's deny never turns into an allow.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.errors import Forbidden, MalformedRequest
from keybroker.proxy import policy
from keybroker.settings import Policy
from keybroker.signers import _aws_models
from keybroker.signers._read_actions import is_read_action
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import Operation, ParsedAuth, SigningRequest
from keybroker.signers.ksyun import SIGNER as KSYUN
from keybroker.signers.s3_address import parse_s3_address
from tests.signers.test_aws_helpers import body_of, from_botocore

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (client, method, params, read-only)
SDK_CALLS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("s3", "put_object", {"Bucket": "b", "Key": "k/x", "Body": b"x"}, False),
    ("s3", "get_object", {"Bucket": "b", "Key": "k"}, True),
    ("s3", "head_object", {"Bucket": "b", "Key": "k"}, True),
    ("s3", "delete_object", {"Bucket": "b", "Key": "k"}, False),
    ("s3", "delete_objects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}}, False),
    ("s3", "list_buckets", {}, True),
    ("s3", "list_objects", {"Bucket": "b"}, True),
    ("s3", "list_objects_v2", {"Bucket": "b", "Prefix": "p"}, True),
    ("s3", "copy_object", {"Bucket": "b", "Key": "k", "CopySource": "a/b"}, False),
    ("s3", "create_multipart_upload", {"Bucket": "b", "Key": "k"}, False),
    ("s3", "upload_part", {"Bucket": "b", "Key": "k", "UploadId": "u", "PartNumber": 1}, False),
    (
        "s3",
        "upload_part_copy",
        {"Bucket": "b", "Key": "k", "UploadId": "u", "PartNumber": 1, "CopySource": "a/b"},
        False,
    ),
    (
        "s3",
        "complete_multipart_upload",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]},
        },
        False,
    ),
    ("s3", "abort_multipart_upload", {"Bucket": "b", "Key": "k", "UploadId": "u"}, False),
    ("s3", "list_parts", {"Bucket": "b", "Key": "k", "UploadId": "u"}, True),
    ("s3", "list_multipart_uploads", {"Bucket": "b"}, True),
    ("s3", "create_bucket", {"Bucket": "b"}, False),
    ("s3", "delete_bucket", {"Bucket": "b"}, False),
    ("s3", "get_bucket_acl", {"Bucket": "b"}, True),
    ("s3", "put_bucket_acl", {"Bucket": "b", "ACL": "private"}, False),
    ("s3", "get_bucket_policy", {"Bucket": "b"}, True),
    ("s3", "put_bucket_policy", {"Bucket": "b", "Policy": "{}"}, False),
    ("s3", "delete_bucket_policy", {"Bucket": "b"}, False),
    ("s3", "get_object_tagging", {"Bucket": "b", "Key": "k"}, True),
    ("s3", "put_object_tagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": []}}, False),
    ("s3", "get_bucket_lifecycle_configuration", {"Bucket": "b"}, True),
    ("s3", "create_session", {"Bucket": "b"}, False),  # hands out credentials
    ("ec2", "describe_instances", {}, True),
    ("ec2", "terminate_instances", {"InstanceIds": ["i-1"]}, False),
    ("ec2", "run_instances", {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1}, False),
    ("ec2", "get_password_data", {"InstanceId": "i-1"}, False),  # a credential
    ("sts", "get_caller_identity", {}, True),
    (
        "sts",
        "assume_role",
        {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s1"},
        False,
    ),
    ("sts", "get_session_token", {}, False),
    ("iam", "list_users", {}, True),
    ("iam", "delete_user", {"UserName": "u"}, False),
    ("dynamodb", "get_item", {"TableName": "t", "Key": {"k": {"S": "v"}}}, True),
    ("dynamodb", "query", {"TableName": "t"}, True),
    ("dynamodb", "delete_table", {"TableName": "t"}, False),
    ("kms", "list_keys", {}, True),
    ("kms", "describe_key", {"KeyId": "k"}, True),
    ("kms", "encrypt", {"KeyId": "k", "Plaintext": b"x"}, False),
    ("kms", "schedule_key_deletion", {"KeyId": "k"}, False),
    ("sqs", "list_queues", {}, True),
    (
        "cloudwatch",
        "get_metric_data",
        {"MetricDataQueries": [], "StartTime": 0, "EndTime": 1},
        True,
    ),
    ("lambda", "list_functions", {}, True),
    ("lambda", "invoke", {"FunctionName": "f"}, False),
    ("lambda", "delete_function", {"FunctionName": "f"}, False),
]


class _Captured(Exception):
    def __init__(self, request: AWSRequest) -> None:
        self.request = request


def sdk_request(
    client_name: str,
    method: str,
    params: dict[str, Any],
    *,
    endpoint: str | None = None,
    region: str = "us-east-1",
    addressing: str = "path",
    hook: Any = None,
) -> tuple[SigningRequest, bytes, str]:
    """The request ``client.method(**params)`` sends, signed with boto3's SigV4, and the
    SDK's own operation name."""
    client = boto3.client(
        client_name,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=BotoConfig(s3={"addressing_style": addressing}, retries={"max_attempts": 1}),
    )

    def capture(request: AWSRequest, **_: Any) -> None:
        raise _Captured(request)

    if hook is not None:
        client.meta.events.register("before-sign", hook)
    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured) as sent:
        getattr(client, method)(**params)
    return (
        from_botocore(sent.value.request),
        body_of(sent.value.request),
        client.meta.method_to_api_mapping[method],
    )


def classify(req: SigningRequest, body: bytes | None) -> Operation:
    return SIGNER.operation(req, SIGNER.parse(req), body)


_CASES = [(*c, "path") for c in SDK_CALLS] + [(*c, "virtual") for c in SDK_CALLS if c[0] == "s3"]


@pytest.mark.parametrize(("client", "method", "params", "read_only", "addressing"), _CASES)
def test_sdk_calls_classified_as_the_sdk_names_them(
    client: str, method: str, params: dict[str, Any], read_only: bool, addressing: str
) -> None:
    req, body, name = sdk_request(client, method, params, addressing=addressing)
    op = classify(req, body)
    assert (op.action, op.read_only) == (name, read_only)
    if client == "s3" and "Bucket" in params:
        assert op.resource == "/".join(p for p in (params["Bucket"], params.get("Key")) if p)


def test_custom_endpoint_is_path_style() -> None:
    """An S3 client pointed at the proxy: the bucket is the first path segment."""
    req, body, _ = sdk_request(
        "s3", "delete_object", {"Bucket": "b", "Key": "k"}, endpoint="http://127.0.0.1:3888"
    )
    assert classify(req, body) == Operation("s3", "DeleteObject", "b/k", False)


# -- the reproductions of the bypass ----------------------------------------------------------


def _set_target(value: str) -> Any:
    def hook(request: AWSRequest, **_: Any) -> None:
        request.headers["X-Amz-Target"] = value

    return hook


def _add_query(extra: str) -> Any:
    def hook(request: AWSRequest, **_: Any) -> None:
        request.url += ("&" if "?" in request.url else "?") + extra

    return hook


@pytest.mark.parametrize("method", ["delete_object", "put_object"])
def test_x_amz_target_on_s3_is_ignored(method: str) -> None:
    req, body, name = sdk_request(
        "s3", method, {"Bucket": "b", "Key": "k"}, hook=_set_target("S3.GetObject")
    )
    op = classify(req, body)
    assert (op.action, op.read_only) == (name, False)
    with pytest.raises(Forbidden):
        policy.check(Policy(preset="read-only"), _facts(req, op))


def test_json_target_on_a_query_service_is_ignored() -> None:
    req, body, _ = sdk_request(
        "ec2",
        "terminate_instances",
        {"InstanceIds": ["i-1"]},
        hook=_set_target("ec2.DescribeInstances"),
    )
    op = classify(req, body)
    assert op.action == "TerminateInstances"
    with pytest.raises(Forbidden, match="ec2:TerminateInstances"):
        policy.check(Policy(actions=["ec2:Describe*"]), _facts(req, op))


def test_query_action_against_body_action_is_refused() -> None:
    req, body, _ = sdk_request(
        "ec2",
        "terminate_instances",
        {"InstanceIds": ["i-1"]},
        hook=_add_query("Action=DescribeInstances"),
    )
    with pytest.raises(MalformedRequest, match="more than one Action"):
        classify(req, body)


def test_copy_source_in_the_query_is_a_copy() -> None:
    """S3 reads x-amz-* headers from the query too (presigned URLs put them there)."""
    req = SigningRequest("PUT", "h", "/b/k", "X-Amz-Copy-Source=a%2Fc", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"").action == "CopyObject"
    req.query += "&partNumber=1&uploadId=u"
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"").action == "UploadPartCopy"


@pytest.mark.parametrize(
    "spelling",
    ["TerminateInstances%20", "%09TerminateInstances", "+TerminateInstances", "terminateinstances"],
)
@pytest.mark.parametrize("where", ["query", "body"])
def test_action_spellings_do_not_escape_a_deny_rule(spelling: str, where: str) -> None:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    params = f"Action={spelling}&Version=2016-11-15"
    req = SigningRequest("POST", "h", "/", params if where == "query" else "", headers)
    body = b"" if where == "query" else params.encode()
    op = SIGNER.operation(req, ParsedAuth("a", service="ec2"), body)
    with pytest.raises(Forbidden):
        policy.check(Policy(deny_actions=["ec2:TerminateInstances"]), _facts(req, op))


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/2015-03-31/functions/f/invocations", "Invoke"),
        ("/2015-03-31/functions/f/%69nvocations", "Invoke"),
        ("/2015-03-31/functions/f/./invocations", "Invoke"),
        ("/2015-03-31/functions/x/../f/invocations", "Invoke"),
        ("/2015-03-31/%66unctions/f/invocations", "Invoke"),
        ("/2015-03-31/functions/a%2Fb/invocations", "Invoke"),
    ],
)
def test_rest_paths_are_read_as_the_service_routes_them(path: str, action: str) -> None:
    req = SigningRequest("POST", "lambda.us-east-1.amazonaws.com", path, "", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="lambda"), b"").action == action


def test_s3_keys_keep_their_dot_segments() -> None:
    req = SigningRequest("GET", "h", "/b/a/../k", "", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"") == Operation(
        "s3", "GetObject", "b/a/../k", True
    )
    req = SigningRequest("PUT", "h", "/b/%6b", "", CIMultiDict({"x-amz-copy-source": "a/c"}))
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"").action == "CopyObject"


def test_action_parameter_on_s3_is_ignored() -> None:
    req, body, _ = sdk_request(
        "s3", "delete_object", {"Bucket": "b", "Key": "k"}, hook=_add_query("Action=GetObject")
    )
    assert classify(req, body).action == "DeleteObject"


@pytest.mark.parametrize(
    ("host", "path", "action", "resource"),
    [
        ("s3logs.s3.amazonaws.com", "/", "DeleteBucket", "s3logs"),
        ("s3.s3.eu-west-1.amazonaws.com", "/", "DeleteBucket", "s3"),
        ("a.s3.b.s3.dualstack.eu-west-1.amazonaws.com", "/k", "DeleteObject", "a.s3.b/k"),
        ("s3.amazonaws.com", "/s3logs", "DeleteBucket", "s3logs"),
        ("s3.amazonaws.com", "/", None, None),
        ("proxy.example.com:3888", "/s3logs/k", "DeleteObject", "s3logs/k"),
        # a key under a bucket's own host that looks like S3 Control's path is a key
        ("b.s3.amazonaws.com", "/v20180820/bucket/x", "DeleteObject", "b/v20180820/bucket/x"),
    ],
)
def test_delete_addresses(host: str, path: str, action: str | None, resource: str | None) -> None:
    req = SigningRequest("DELETE", host, path, "", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="s3"), b"") == Operation(
        "s3", action, resource, False
    )


# -- the S3 address parser, shared with routing ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "bucket", "key", "virtual"),
    [
        ("bucket.s3.amazonaws.com", "/k", "bucket", "k", True),
        ("my.dotted.bucket.s3.eu-west-1.amazonaws.com", "/a/b", "my.dotted.bucket", "a/b", True),
        ("b.s3.dualstack.eu-west-1.amazonaws.com", "/", "b", "", True),
        ("b.s3-fips.us-east-1.amazonaws.com", "/k", "b", "k", True),
        ("b.s3-fips.dualstack.us-gov-west-1.amazonaws.com", "/k", "b", "k", True),
        ("b.s3-accelerate.amazonaws.com", "/k", "b", "k", True),
        ("b.s3-accelerate.dualstack.amazonaws.com", "/k", "b", "k", True),
        ("b.s3-us-west-2.amazonaws.com", "/k", "b", "k", True),
        ("b.s3-external-1.amazonaws.com", "/k", "b", "k", True),
        (
            "ap-123456789012.s3-accesspoint.eu-west-1.amazonaws.com",
            "/k",
            "ap-123456789012",
            "k",
            True,
        ),
        ("b.s3.cn-north-1.amazonaws.com.cn", "/k", "b", "k", True),
        ("B.S3.AMAZONAWS.COM.:443", "/k", "b", "k", True),
        ("s3logs.s3.amazonaws.com", "/", "s3logs", "", True),
        ("s3.amazonaws.com", "/b/k/x", "b", "k/x", False),
        ("s3.dualstack.eu-west-1.amazonaws.com", "/b/", "b", "", False),
        ("s3-fips.us-east-1.amazonaws.com", "/b", "b", "", False),
        ("123456789012.s3-control.eu-west-1.amazonaws.com", "/v20180820/jobs", None, "", False),
        ("b.s3.example.com", "/k", "k", "", False),
        ("127.0.0.1:3888", "/b/k", "b", "k", False),
        ("[::1]:3888", "/b/k", "b", "k", False),
    ],
)
def test_s3_address(host: str, path: str, bucket: str | None, key: str, virtual: bool) -> None:
    address = parse_s3_address(host, path)
    assert (address.bucket, address.key, address.virtual) == (bucket, key, virtual)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_bucket = st.lists(
    st.one_of(_label, st.sampled_from(["s3", "s3logs", "s3-x", "dualstack"])),
    min_size=1,
    max_size=4,
).map(".".join)
_tail = st.sampled_from(
    [
        "s3.amazonaws.com",
        "s3.eu-west-1.amazonaws.com",
        "s3.dualstack.eu-west-1.amazonaws.com",
        "s3-eu-west-1.amazonaws.com",
        "s3.cn-north-1.amazonaws.com.cn",
        "s3-fips.us-east-1.amazonaws.com",
        "s3-accelerate.amazonaws.com",
        "s3-accesspoint.eu-west-1.amazonaws.com",
    ]
)


@SETTINGS
@given(
    _bucket,
    _tail,
    st.sampled_from(["/", "/k", "/a/b", "//x", "/v20180820/jobs"]),
    st.sampled_from(["", ":443"]),
)
def test_routing_and_classifier_agree_on_the_bucket(
    bucket: str, tail: str, path: str, port: str
) -> None:
    host = f"{bucket}.{tail}{port}"
    req = SigningRequest("DELETE", host, path, "", CIMultiDict())
    region = "cn-north-1" if tail.endswith(".cn") else "eu-west-1"
    upstream = SIGNER.native_upstream(req, ParsedAuth("a", region=region, service="s3"))
    assert upstream is not None
    sent = SigningRequest("DELETE", upstream.removeprefix("https://"), path, "", CIMultiDict())
    inbound, outbound = parse_s3_address(host, path), parse_s3_address(sent.host, path)
    assert (inbound.bucket, inbound.key) == (outbound.bucket, outbound.key) == (bucket, path[1:])
    auth = ParsedAuth("a", service="s3")
    assert SIGNER.operation(req, auth, b"") == SIGNER.operation(sent, auth, b"")


# -- properties: what the vendor ignores never turns a deny into an allow ---------------------

_IGNORED_HEADERS = st.sampled_from(
    ["X-Amz-Target", "X-HTTP-Method-Override", "X-Amz-Action", "X-Forwarded-Method", "Action"]
)
_OPERATION_NAMES = st.sampled_from(
    ["S3.GetObject", "GetObject", "ec2.DescribeInstances", "DescribeInstances",
     "TrentService.ListKeys", "DynamoDB_20120810.GetItem", "ListBuckets",
     "AWSSecurityTokenServiceV20110615.GetCallerIdentity"]
)  # fmt: skip

POLICIES = [
    Policy(preset="read-only"),
    Policy(actions=["s3:Get*", "s3:List*", "s3:Head*"]),
    Policy(actions=["ec2:Describe*", "kms:List*", "kms:Describe*", "dynamodb:Get*", "sts:Get*"]),
    Policy(deny_actions=["s3:Delete*", "s3:Put*", "ec2:Terminate*", "kms:Schedule*"]),
]


def _facts(req: SigningRequest, op: Operation) -> policy.RequestFacts:
    return policy.RequestFacts(
        op.service, op.action, "us-east-1", req.method, "127.0.0.1", op.read_only
    )


def _allowed(req: SigningRequest, body: bytes | None, rules: Policy) -> bool:
    try:
        policy.check(rules, _facts(req, classify(req, body)))
    except (Forbidden, MalformedRequest):
        return False
    return True


@pytest.fixture(scope="module")
def sdk_requests() -> list[tuple[SigningRequest, bytes, str]]:
    return [sdk_request(c, m, p) for c, m, p, _ in SDK_CALLS]


@st.composite
def ignored_additions(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Headers the services do not read, and query parameters a REST or JSON service does not
    read (``Action=``, ``Version=``, ``x-id=``)."""
    extra = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["header", "query"]))
        name = (
            draw(_IGNORED_HEADERS)
            if kind == "header"
            else draw(
                st.sampled_from(["Action", "action", "%41ction", "Version", "x-id", "X-Amz-Target"])
            )
        )
        extra.append((kind, name, draw(_OPERATION_NAMES)))
    return extra


def _with(req: SigningRequest, service: str, extra: list[tuple[str, str, str]]) -> SigningRequest:
    """``req`` with the additions the service ``service`` does not read."""
    model = _aws_models.service_model(service)
    assert model is not None
    out = req.copy()
    for kind, name, value in extra:
        if kind == "header":
            if name == "X-Amz-Target" and (model.json or model.cbor):
                continue  # the JSON services do read it
            out.headers[name] = value
        else:
            if name.lower().replace("%41", "a") == "action" and model.query:
                continue  # the query services do read it (a second value is a 400, tested above)
            out.query = f"{out.query}&{name}={value}" if out.query else f"{name}={value}"
    return out


@SETTINGS
@given(st.data(), ignored_additions())
def test_ignored_additions_never_turn_a_deny_into_an_allow(
    sdk_requests: list[tuple[SigningRequest, bytes, str]],
    data: st.DataObject,
    extra: list[tuple[str, str, str]],
) -> None:
    req, body, _ = data.draw(st.sampled_from(sdk_requests))
    service = SIGNER.parse(req).service or ""
    changed = _with(req, service, extra)
    for rules in POLICIES:
        if not _allowed(req, body, rules):
            assert not _allowed(changed, body, rules), (rules, extra)


_S3_WORDS = ["acl", "tagging", "uploads", "uploadId", "partNumber", "delete", "policy",
             "versioning", "list-type", "restore", "select", "torrent", "versionId", "x-id",
             "Action", "lifecycle", "cors", "session", "retention", "legal-hold",
             "select-type"]  # fmt: skip


@st.composite
def s3_requests(draw: st.DrawFn) -> tuple[SigningRequest, bytes | None]:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    host = draw(
        st.sampled_from(
            [
                "127.0.0.1:3888",
                "b.s3.amazonaws.com",
                "s3.eu-west-1.amazonaws.com",
                "s3logs.s3.amazonaws.com",
            ]
        )
    )
    path = draw(st.sampled_from(["/", "/b", "/b/", "/b/k", "/b/k/x", "/v20180820/jobs"]))
    names = draw(st.lists(st.sampled_from(_S3_WORDS), max_size=3))
    query = "&".join(f"{n}={draw(st.sampled_from(['', '1', '2', 'GetObject']))}" for n in names)
    headers: CIMultiDict[str] = CIMultiDict()
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "x-amz-copy-source",
                    "X-Amz-Target",
                    "x-amz-account-id",
                    "Content-Length",
                    "Transfer-Encoding",
                ]
            ),
            max_size=2,
        )
    ):
        headers[name] = draw(st.sampled_from(["S3.GetObject", "a/b", "1", "chunked"]))
    body = draw(st.sampled_from([None, b"", b"Action=ListBuckets"]))
    return SigningRequest(method, host, path, query, headers), body


@SETTINGS
@given(s3_requests())
@example((SigningRequest("POST", "h", "/b/k", "select=&select-type=2", CIMultiDict()), b""))
@example((SigningRequest("DELETE", "s3logs.s3.amazonaws.com", "/", "", CIMultiDict()), b""))
def test_read_only_never_forwards_a_write(case: tuple[SigningRequest, bytes | None]) -> None:
    req, body = case
    try:
        op = SIGNER.operation(req, ParsedAuth("a", service="s3"), body)
    except MalformedRequest:
        return
    try:
        policy.check(Policy(preset="read-only"), _facts(req, op))
    except Forbidden:
        return
    assert req.method in ("GET", "HEAD")
    assert is_read_action(op.action)


@SETTINGS
@given(
    st.sampled_from(
        ["ec2", "sts", "iam", "kms", "dynamodb", "monitoring", "lambda", "nosuchservice"]
    ),
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    st.sampled_from(["", "Action=DescribeInstances", "Action=TerminateInstances&action=X"]),
    st.sampled_from([None, "TrentService.ListKeys", "DynamoDB_20120810.DeleteTable", "Bogus.GetX"]),
)
def test_read_only_allows_only_read_actions(
    service: str, method: str, query: str, target: str | None
) -> None:
    headers: CIMultiDict[str] = CIMultiDict({"X-Amz-Target": target} if target else {})
    req = SigningRequest(method, "127.0.0.1:3888", "/", query, headers)
    try:
        op = SIGNER.operation(req, ParsedAuth("a", service=service), b"")
        policy.check(Policy(preset="read-only"), _facts(req, op))
    except (Forbidden, MalformedRequest):
        return
    assert method in ("GET", "HEAD", "POST")
    assert op.action is not None and is_read_action(op.action)


# -- unknown services, the read rule, Kingsoft -------------------------------------------------


def test_unknown_service_is_unclassified() -> None:
    req = SigningRequest("GET", "h", "/", "Action=DescribeThings", CIMultiDict())
    assert SIGNER.operation(req, ParsedAuth("a", service="nosuchservice"), b"") == Operation(
        "nosuchservice", None, None, False
    )
    with pytest.raises(Forbidden, match="cannot be determined"):
        policy.check(Policy(actions=["*"]), _facts(req, Operation("x", None)))


def test_a_streamed_body_may_name_another_action() -> None:
    """A query-protocol request whose body the proxy does not hold is unclassified."""
    headers: CIMultiDict[str] = CIMultiDict({"Content-Length": "40"})
    req = SigningRequest("POST", "h", "/", "Action=DescribeInstances", headers)
    assert SIGNER.operation(req, ParsedAuth("a", service="ec2"), None).action is None


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("GetObject", True), ("ListBuckets", True), ("DescribeInstances", True), ("Query", True),
        ("BatchGetItem", True), ("HeadObject", True), ("GetSessionToken", False),
        ("GetFederationToken", False), ("GetPasswordData", False), ("CreateSession", False),
        ("GetAuthorizationToken", False), ("GetRoleCredentials", False), ("Listen", False),
        ("CheckoutLicense", False), ("DeleteObject", False), ("", False), (None, False),
    ],
)  # fmt: skip
def test_read_action_rule(name: str | None, read: bool) -> None:
    assert is_read_action(name) is read


def test_ksyun_reads_action_from_query_and_body() -> None:
    auth = ParsedAuth("a", service="kec")
    form: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    get = SigningRequest("GET", "kec.api.ksyun.com", "/", "Action=DescribeInstances", form)
    assert KSYUN.operation(get, auth, b"") == Operation("kec", "DescribeInstances", None, True)
    post = SigningRequest("POST", "kec.api.ksyun.com", "/", "", form)
    op = KSYUN.operation(post, auth, b"Action=TerminateInstances&Version=2016-03-04")
    assert op == Operation("kec", "TerminateInstances", None, False)
    conflict = SigningRequest("POST", "kec.api.ksyun.com", "/", "Action=DescribeInstances", form)
    with pytest.raises(MalformedRequest):
        KSYUN.operation(conflict, auth, b"Action=TerminateInstances")
    delete = SigningRequest("DELETE", "kec.api.ksyun.com", "/", "Action=DescribeInstances", form)
    assert not KSYUN.operation(delete, auth, b"").read_only


# -- the data file -----------------------------------------------------------------------------


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_aws_services", ROOT / "scripts/gen_aws_services.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_data_file_matches_the_installed_botocore() -> None:
    """Run scripts/gen_aws_services.py when this fails (botocore was upgraded)."""
    shipped = json.loads(
        gzip.decompress((ROOT / "src/keybroker/signers/data/aws_services.json.gz").read_bytes())
    )
    assert shipped == json.loads(json.dumps(_generator().build()))
    assert _aws_models.botocore_version() == shipped["botocore"]


def iter_rest(entry: _aws_models.ServiceModel) -> Iterator[_aws_models.RestOperation]:
    for by in entry.rest.values():
        for ops in by.values():
            yield from ops


def test_s3_rest_operations_are_all_there() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    entry = _aws_models.service_model("s3")
    assert entry is not None
    kept = {op.name for op in iter_rest(entry)}
    # the deprecated aliases and S3 Express's ListDirectoryBuckets are sent as another op
    dropped = set(model.operation_names) - kept
    assert dropped == {
        "GetBucketLifecycle", "GetBucketNotification", "PutBucketLifecycle",
        "PutBucketNotification", "ListDirectoryBuckets",
    }  # fmt: skip
