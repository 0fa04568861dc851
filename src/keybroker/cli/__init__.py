"""The ``keybroker`` command: one module per command group.

:mod:`~keybroker.cli.main` (``serve``, ``check``, the parser and ``main``),
:mod:`~keybroker.cli.init`, :mod:`~keybroker.cli.tryout` (``try``),
:mod:`~keybroker.cli.kms`, :mod:`~keybroker.cli.audit`, :mod:`~keybroker.cli.seal`,
:mod:`~keybroker.cli.preflight` (what ``check`` looks at beyond the file).
Command modules are imported when their command runs, so ``keybroker --help`` stays quick.

May import: anything.
"""

from keybroker.cli.main import main

__all__ = ["main"]
