"""Runs AWS CLI v1 commands for the interop matrix, one process per cell: each JSON line on
stdin (``{"argv": [...], "env": {...}}``) is one command run by the CLI's own driver (what the
``aws`` script runs: ``awscli.clidriver``), with a new driver each time — a new botocore
session and connection pool, as a new ``aws`` process has — but the CLI's start-up (about a
second of imports) paid once.  Each answer is a JSON line ``{"rc", "out", "err"}``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from awscli.clidriver import create_clidriver


def main() -> None:
    answers = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        os.environ.update(req["env"])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = create_clidriver().main(req["argv"])
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
        answers.write(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue()}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
