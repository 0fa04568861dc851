"""Regenerate the UCloud known-answer vectors with the vendor SDK's own signer.

Run from the repository root: ``python tests/vectors/ucloud/generate.py``.  ``sdk.json`` is
signed by ``ucloud.core.auth.Credential.verify_ac`` over parameters flattened by the SDK's own
``ucloud.core.typesystem.encoder.encode`` (the scheme signs no time: output is reproducible).
``doc.json`` holds the worked examples of UCloud's public "签名算法" pages, with the values the
pages publish (copied, not computed here).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ucloud.core.auth import Credential
from ucloud.core.typesystem import encoder

HERE = Path(__file__).parent
SDK = f"ucloud-sdk-python3 {version('ucloud-sdk-python3')} Credential.verify_ac"
FORM = "application/x-www-form-urlencoded"


def case(
    name: str,
    params: dict[str, Any],
    *,
    form: str,
    public_key: str = "ucloud-proxy-pk",
    private_key: str = "ucloud-proxy-private",
) -> dict[str, Any]:
    flat = encoder.encode(params)
    flat["Signature"] = Credential(public_key, private_key).verify_ac(flat)
    if form == "query":
        request = {"method": "GET", "query": urlencode(flat), "headers": {}, "body": ""}
    elif form == "form":
        request = {"method": "POST", "query": "", "headers": {"Content-Type": FORM},
                   "body": urlencode(flat)}  # fmt: skip
    else:  # JSON: the nested document plus the two credential parameters
        doc = {**params, "PublicKey": public_key, "Signature": flat["Signature"]}
        request = {"method": "POST", "query": "", "headers": {"Content-Type": "application/json"},
                   "body": json.dumps(doc, ensure_ascii=False)}  # fmt: skip
    return {
        "name": name,
        "source": SDK,
        "form": form,
        "request": {"host": "api.ucloud.cn", "path": "/", **request},
        "credential": {"access_key": public_key, "secret_key": private_key},
        "expected": {"signature": flat["Signature"]},
    }


def sdk_cases() -> list[dict[str, Any]]:
    describe = {"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10}
    nested = {
        "Action": "CreateUHostInstance",
        "Region": "cn-sh2",
        "Zone": "cn-sh2-02",
        "Disks": [{"IsBoot": "True", "Type": "CLOUD_SSD", "Size": 20}],
        "NetworkInterface": [{"EIP": {"Bandwidth": 2.0, "PayMode": "Traffic"}}],
        "Tag": "テスト & more=yes",
        "DryRun": False,
        "Ratio": 0.25,
    }
    return [
        case("query-describe", describe, form="query"),
        case("form-describe", describe, form="form"),
        case("form-nested-unicode", nested, form="form"),
        case("json-nested-unicode", nested, form="json"),
        case(
            "query-other-key",
            {"Action": "GetProjectList"},
            form="query",
            public_key="another+pk/with=chars",
            private_key="p r i v",
        ),
    ]


def doc_cases() -> list[dict[str, Any]]:
    pk, private = (
        "someone@example.com1296235120854146120",
        "46f09bb9fab4f12dfc160dae12273d5332b5debe",
    )
    sig = "4201919d267504385deb93af19e0197870fed36b"
    params = [
        ("Action", "DescribeUHostInstance"),
        ("Region", "cn-bj2"),
        ("Limit", "10"),
        ("PublicKey", pk),
        ("Signature", sig),
    ]
    return [
        {
            "name": "doc-describe-uhost",
            "source": "https://docs.tnqacloud.com/docs/api/summary/signature (UCloud's "
            "signature page as republished for a UCloud-based cloud; request, string to sign "
            "and signature all published there)",
            "form": "query",
            "request": {
                "method": "GET",
                "host": "api.ucloud.cn",
                "path": "/",
                "query": urlencode(params),
                "headers": {},
                "body": "",
            },
            "credential": {"access_key": pk, "secret_key": private},
            "expected": {
                "signature": "4201919d267504385deb93af19e0197870fed36b",
                "string_to_sign": "ActionDescribeUHostInstanceLimit10PublicKey"
                + pk
                + "Regioncn-bj2",
            },
        },
        create_uhost_case(),
    ]


def create_uhost_case() -> dict[str, Any]:
    """UCloud's own page: it publishes the parameters and the string to sign; the signature
    recorded here is the SDK's for exactly those parameters."""
    pk, private = (
        "ucloudsomeone@example.com1296235120854146120",
        "46f09bb9fab4f12dfc160dae12273d5332b5debe",
    )
    params: dict[str, Any] = {
        "Action": "CreateUHostInstance", "Region": "cn-bj2", "Zone": "cn-bj2-04",
        "ImageId": "f43736e1-65a5-4bea-ad2e-8a46e18883c2", "CPU": 2, "Memory": 2048,
        "DiskSpace": 10, "LoginMode": "Password", "Password": "VUNsb3VkLmNu", "Name": "Host01",
        "ChargeType": "Month", "Quantity": 1,
    }  # fmt: skip
    built = case("doc-create-uhost", params, form="form", public_key=pk, private_key=private)
    built["source"] = (
        "https://docs.ucloud.cn/api/summary/signature (parameters and string to sign); "
        f"{SDK} (signature)"
    )
    built["expected"]["string_to_sign"] = (
        "ActionCreateUHostInstanceCPU2ChargeTypeMonthDiskSpace10"
        "ImageIdf43736e1-65a5-4bea-ad2e-8a46e18883c2LoginModePasswordMemory2048NameHost01"
        f"PasswordVUNsb3VkLmNuPublicKey{pk}Quantity1Regioncn-bj2Zonecn-bj2-04"
    )
    return built


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", doc_cases())):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
