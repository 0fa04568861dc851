"""The key service: data-encryption keys for platforms, on the proxy's port and over gRPC.

A platform already holds *proxy* credentials for its cloud accounts; it signs key requests
with them exactly as it signs cloud API calls, and each account's ``KeyPolicy`` says which
operations it may run on which key ids.  Configured by the ``KeyService`` section::

    KeyService:
      Enabled: true
      PathPrefix: /_keybroker/kms            # the HTTP JSON API, on the proxy's port
      KMS: "kms://local?keyFile=./kek.bin"   # any keybroker.kms URI (cluster-kms, aws, ...)
      Storage: "storage://file?path=./deks"  # storage://no-store with cluster-kms
      Grpc: {Enabled: false, Address: "127.0.0.1:9000", CertFile: "", KeyFile: "",
             ClientCAFile: ""}
      MaxDEKSize: 64
    Endpoints:
      - CloudAccountName: ...
        KeyPolicy: {Prefixes: ["tenant-a/"], Operations: [get, create]}

Modules: :mod:`~keybroker.keyservice.http` (the routes), :mod:`~.grpc_server`
(Constellation's ``kms.API``; needs ``keybroker[grpc]``), :mod:`~.keys` (DEKs by id and
tombstones), :mod:`~.policy`, :mod:`~.operations` (what both APIs share), :mod:`~.service`
(life cycle and audit), :mod:`~.errors`.
"""

from __future__ import annotations

from keybroker.keyservice.errors import (
    InvalidArgument,
    KeyDeleted,
    KeyNotFound,
    MethodNotAllowed,
    NotSupported,
    UnknownOperation,
)
from keybroker.keyservice.keys import ID_PREFIX, TOMBSTONE_PREFIX, KeyStore
from keybroker.keyservice.operations import KeyEvent
from keybroker.keyservice.service import KeyService, attach, build_store

__all__ = [
    "ID_PREFIX",
    "TOMBSTONE_PREFIX",
    "InvalidArgument",
    "KeyDeleted",
    "KeyEvent",
    "KeyNotFound",
    "KeyService",
    "KeyStore",
    "MethodNotAllowed",
    "NotSupported",
    "UnknownOperation",
    "attach",
    "build_store",
]
