"""Each vendor's facts for the signer conformance suite (``tests/signers/test_conformance.py``):
one module a vendor, each with its ``FORMS`` (how its clients sign), ``VECTORS`` (known
answers from ``tests/vectors/<vendor>/``) and ``REPLAY`` (SDK request makers for the replay-key
property, with the respellings its parser must accept)."""

from __future__ import annotations

from tests.signers.conformance import (
    akamai,
    aliyun,
    aws,
    baidu,
    baishan,
    huawei,
    jingdong,
    ksyun,
    qiniu,
    tencent,
    ucloud,
    volcengine,
    wangsu,
)
from tests.signers.conformance.base import Form, Vector
from tests.signers.conformance.respell import Maker, Respell

_VENDORS = [
    aws,
    volcengine,
    ksyun,
    aliyun,
    tencent,
    huawei,
    baidu,
    jingdong,
    akamai,
    qiniu,
    ucloud,
    wangsu,
    baishan,
]

FORMS: list[Form] = [f for m in _VENDORS for f in m.FORMS]
VECTORS: list[Vector] = [v for m in _VENDORS for v in m.VECTORS]
REPLAY: dict[str, tuple[Maker, list[Respell]]] = {
    k: v for m in _VENDORS for k, v in m.REPLAY.items()
}
GARBAGE: list[tuple[Form, str]] = [(f, name) for f in FORMS for name in f.garbage]
