"""Structured logs: JSON lines, one access line per request with its request id, rotated by
size in key-proxy's ``Log`` directory; and the redaction every log, error and audit line goes
through so that no secret is ever written.

:mod:`~keybroker.logs.setup` (applies ``Log``), :mod:`~keybroker.logs.format`,
:mod:`~keybroker.logs.file`, :mod:`~keybroker.logs.redact`.

May import: the foundation modules only.
"""

from keybroker.logs.redact import SECRETS, redact_text
from keybroker.logs.setup import log_event, setup_logging

__all__ = ["SECRETS", "log_event", "redact_text", "setup_logging"]
