"""Every key-service call that arrives has its ``key`` record, whatever fails.

The HTTP API records a call that fails with an unexpected error (a KMS or storage outage:
``KMSError``, ``OSError``) as ``deny``/``internal error``; the gRPC ``GetDataKey`` handler only
recorded ``ProxyError``s, so a call during such an outage left no line at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from keybroker.errors import KMSError
from keybroker.keyservice.keys import KeyStore
from keybroker.settings import GrpcConfig
from tests.keyservice.grpc_client import generate, get_data_key
from tests.keyservice.helpers import KeyBroker, keybroker
from tests.servers import free_port


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType, Path]:
    return generate(tmp_path_factory.mktemp("kms-client"))


@pytest.fixture(scope="module")
def kb_grpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyBroker]:
    grpc_cfg = GrpcConfig(enabled=True, address=f"127.0.0.1:{free_port()}")
    with keybroker(tmp_path_factory.mktemp("grpc"), grpc=grpc_cfg) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("error", [KMSError("the KMS is unreachable"), OSError(5, "I/O error")])
def test_a_grpc_call_failing_in_the_kms_is_recorded(
    kb_grpc: KeyBroker, client: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def broken(self: KeyStore, key_id: str, size: int) -> bytes | None:
        raise error

    before = len(kb_grpc.key_events())
    monkeypatch.setattr(KeyStore, "lookup", broken)
    with (
        grpc.insecure_channel(f"127.0.0.1:{kb_grpc.grpc_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        get_data_key(client, channel, "outage-disk", 32)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert str(error) not in str(caught.value.details())
    events = kb_grpc.key_events()[before:]
    assert [(e["api"], e["key_id"], e["decision"]) for e in events] == [
        ("grpc", "outage-disk", "deny")
    ], events
