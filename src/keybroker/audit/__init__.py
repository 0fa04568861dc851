"""The tamper-evident audit trail: hash-chained JSON lines written before what they record,
Ed25519-signed checkpoints, and the verifier an auditor runs.

:mod:`~keybroker.audit.trail` (:class:`~keybroker.audit.trail.AuditLog`, the writer),
:mod:`~keybroker.audit.event` (what a record holds), :mod:`~keybroker.audit.sync`,
:mod:`~keybroker.audit.files`, :mod:`~keybroker.audit.checkpoint`, :mod:`~keybroker.audit.keys`,
:mod:`~keybroker.audit.mirror`, :mod:`~keybroker.audit.refusals` (folded HTTP-layer refusals),
:mod:`~keybroker.audit.verify` and :mod:`~keybroker.audit.proof` (checking a directory).

May import: ``logs`` (redaction), ``metrics`` and the foundation modules.
"""

from keybroker.audit.proof import verify_keyed
from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import VerifyResult, verify

__all__ = ["AuditLog", "VerifyResult", "verify", "verify_keyed"]
