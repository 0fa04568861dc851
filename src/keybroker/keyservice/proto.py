"""Constellation's ``kms.API`` messages, built in code from the descriptor of ``kms.proto``.

Building the descriptor here (rather than shipping ``protoc`` output) keeps the runtime free
of generated code tied to one protobuf release, and puts the messages in a *private*
descriptor pool: a process that also imports a client generated from ``kms.proto`` (tests,
or an application embedding keybroker) sees no clash over the ``kms.*`` names.
``tests/keyservice`` compiles ``kms.proto`` with ``protoc`` and checks the two descriptors are
the same, field for field.

Importing this module needs ``protobuf`` (``install keybroker[grpc]``).
"""

from __future__ import annotations

from typing import Any, Protocol

from keybroker.kms.errors import MissingExtra

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingExtra("the gRPC key service needs protobuf: install keybroker[grpc]") from exc

__all__ = [
    "FILE_NAME",
    "METHOD",
    "SERVICE",
    "DataKeyRequest",
    "GetDataKeyRequest",
    "GetDataKeyResponse",
    "file_descriptor_proto",
]

FILE_NAME = "keybroker/keyservice/kms.proto"
SERVICE = "kms.API"
METHOD = "GetDataKey"


class DataKeyRequest(Protocol):
    """What the server reads of a ``GetDataKeyRequest``."""

    data_key_id: str
    length: int


def file_descriptor_proto() -> Any:
    """``kms.proto`` as a ``FileDescriptorProto``: package ``kms``; ``GetDataKeyRequest
    {string data_key_id = 1; uint32 length = 2;}``, ``GetDataKeyResponse {bytes data_key =
    1;}``; ``service API { rpc GetDataKey(...) }``."""
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package="kms", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    request = fdp.message_type.add(name="GetDataKeyRequest")
    request.field.add(
        name="data_key_id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL
    )
    request.field.add(name="length", number=2, type=field.TYPE_UINT32, label=field.LABEL_OPTIONAL)
    response = fdp.message_type.add(name="GetDataKeyResponse")
    response.field.add(name="data_key", number=1, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    service = fdp.service.add(name="API")
    service.method.add(
        name=METHOD, input_type=".kms.GetDataKeyRequest", output_type=".kms.GetDataKeyResponse"
    )
    return fdp


def _message_classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor_proto())
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"kms.{name}"))
        for name in ("GetDataKeyRequest", "GetDataKeyResponse")
    )


GetDataKeyRequest, GetDataKeyResponse = _message_classes()
