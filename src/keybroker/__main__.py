"""``python -m keybroker`` is the ``keybroker`` command."""

import sys

from keybroker.cli.main import main

sys.exit(main())
