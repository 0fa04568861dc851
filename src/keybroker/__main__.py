"""``python -m keybroker`` is the ``keybroker`` command."""

import sys

from keybroker.cli import main

sys.exit(main())
