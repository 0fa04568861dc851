"""What Volcengine's OpenAPI will execute (``VolcengineSigner.operation``): the ``Action`` of
the query, as the gateway reads it; requests signed by the volcengine SDK's own signer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.errors import Forbidden, MalformedRequest
from keybroker.proxy import policy
from keybroker.settings import Policy
from keybroker.signers.base import Operation, SigningRequest
from keybroker.signers.volcengine import SIGNER
from tests.signers.test_volcengine import sdk_sign

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (service, action, version, read-only)
CALLS = [
    ("iam", "ListUsers", "2018-01-01", True),
    ("iam", "GetUser", "2018-01-01", True),
    ("iam", "CreateUser", "2018-01-01", False),
    ("iam", "DeleteUser", "2018-01-01", False),
    ("ecs", "DescribeInstances", "2020-04-01", True),
    ("ecs", "DeleteInstance", "2020-04-01", False),
    ("sts", "AssumeRole", "2018-01-01", False),
    ("vpc", "DescribeVpcs", "2020-04-01", True),
]


def classify(req: SigningRequest, body: bytes | None) -> Operation:
    return SIGNER.operation(req, SIGNER.parse(req), body)


@pytest.mark.parametrize(("service", "action", "version", "read_only"), CALLS)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_sdk_signed_calls(
    service: str, action: str, version: str, read_only: bool, method: str
) -> None:
    body = "" if method == "GET" else '{"Limit": 10}'
    req, raw = sdk_sign(
        method, query=[("Action", action), ("Version", version)], service=service, body=body
    )
    assert classify(req, raw) == Operation(service, action, None, read_only)


def test_other_spellings_of_action_are_refused_or_unclassified() -> None:
    req, raw = sdk_sign(
        query=[("Action", "ListUsers"), ("action", "DeleteUser"), ("Version", "2018-01-01")]
    )
    with pytest.raises(MalformedRequest):
        classify(req, raw)
    form = "application/x-www-form-urlencoded"
    req, raw = sdk_sign(body="Action=DeleteUser", content_type=form)
    with pytest.raises(MalformedRequest):
        classify(req, raw)
    # only a spelling the gateway does not read: no action
    req, raw = sdk_sign(query=[("action", "ListUsers"), ("Version", "2018-01-01")])
    assert classify(req, raw).action is None
    # a form body the proxy does not hold may name another action
    req, _ = sdk_sign(body="Action=ListUsers", content_type=form)
    req.headers["Content-Length"] = "16"
    assert classify(req, None).action is None
    # a JSON body is not a form: its text is not read as parameters
    req, raw = sdk_sign(body='{"Name": "a&Action=DeleteUser"}')
    assert classify(req, raw).action == "ListUsers"


POLICIES = [
    Policy(preset="read-only"),
    Policy(actions=["iam:List*", "iam:Get*", "ecs:Describe*"]),
    Policy(deny_actions=["iam:Delete*", "iam:Create*", "ecs:Delete*"]),
]


def _allowed(req: SigningRequest, body: bytes | None, rules: Policy) -> bool:
    try:
        op = classify(req, body)
        facts = policy.RequestFacts(
            op.service, op.action, "cn-beijing", req.method, "127.0.0.1", op.read_only
        )
        policy.check(rules, facts)
    except (Forbidden, MalformedRequest):
        return False
    return True


_names = st.sampled_from(["ListUsers", "GetUser", "DescribeInstances", "iam.ListUsers"])


@SETTINGS
@given(
    st.sampled_from(CALLS),
    st.lists(
        st.tuples(
            st.sampled_from(["header", "query"]),
            st.sampled_from(
                ["X-Amz-Target", "X-TC-Action", "X-Acs-Action", "Action", "X-Action", "Version"]
            ),
            _names,
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_ignored_additions_never_turn_a_deny_into_an_allow(
    call: tuple[str, str, str, bool], extra: list[tuple[str, str, str]]
) -> None:
    service, action, version, _ = call
    req, raw = sdk_sign(query=[("Action", action), ("Version", version)], service=service)
    changed = req.copy()
    for kind, name, value in extra:
        if kind == "header":
            changed.headers[name] = value
        elif name not in ("Action",):  # the query's Action is what the gateway reads
            changed.query += f"&{name}={value}"
    for rules in POLICIES:
        if not _allowed(req, raw, rules):
            assert not _allowed(changed, raw, rules), (rules, extra)
