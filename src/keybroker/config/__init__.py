"""key-proxy's ``config.yml``, read, resolved, checked and described.

The values themselves are the dataclasses of :mod:`keybroker.settings` (a foundation module,
so every layer can take its own section without importing this package).  Here:
:mod:`~keybroker.config.yamlform` (a bounded YAML reader that keeps line numbers),
:mod:`~keybroker.config.build` (YAML → :class:`~keybroker.settings.Config`),
:mod:`~keybroker.config.secrets` (``${env:…}``, ``${file:…}``, ``${sealed:…}``),
:mod:`~keybroker.config.check` and its ``check_*`` siblings (every problem, with its line),
:mod:`~keybroker.config.loader` (the entry points), :mod:`~keybroker.config.summary` (what
``keybroker check`` prints).

May import: ``audit`` (key settings), ``kms`` (key-service URIs), ``signers`` (vendor codes),
``logs`` (redaction), ``metrics`` (the Seal section's KMS operations), ``sealing`` and the
foundation modules.
"""

from keybroker.config.check import validate
from keybroker.config.loader import load, loads
from keybroker.config.secrets import register_secret_resolver

__all__ = ["load", "loads", "register_secret_resolver", "validate"]
