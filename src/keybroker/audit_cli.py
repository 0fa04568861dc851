"""``keybroker audit verify PATH``: check an audit log's hash chain.

::

    keybroker audit verify PATH     # PATH: the Audit.Output directory, or one audit file

Prints ``OK: N lines in M files`` and exits 0 when the chain is sound (with a note when it
starts after seq 1: older files were pruned, or removed); prints
``tampered: <file>:<line>: <reason>`` for the first broken line and exits 1; exits 2 with a
one-line message on stderr when PATH is missing or unreadable.  Never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from keybroker.audit import verify

__all__ = ["EXIT_OK", "EXIT_TAMPERED", "EXIT_USAGE", "add_audit_parser", "cmd_verify", "main"]

EXIT_OK, EXIT_TAMPERED, EXIT_USAGE = 0, 1, 2


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``audit`` command to an ``argparse`` sub-parser group; each leaf sets
    ``handler(args) -> exit code``."""
    audit: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="inspect the tamper-evident audit log"
    )
    leaves = audit.add_subparsers(dest="audit_command", required=True)
    check = leaves.add_parser("verify", help="check the hash chain of an audit directory or file")
    check.add_argument("path", metavar="PATH", help="Audit.Output directory or one audit file")
    check.set_defaults(handler=cmd_verify)
    return audit


def cmd_verify(args: argparse.Namespace) -> int:
    """``audit verify``: 0 sound, 1 tampered, 2 missing or unreadable path."""
    path = str(args.path)
    try:
        result = verify(path)
    except FileNotFoundError:
        print(f"keybroker audit verify: {path}: no such file or directory", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        print(f"keybroker audit verify: {path}: cannot read: {reason}", file=sys.stderr)
        return EXIT_USAGE
    print(result)
    if result.ok and result.first_seq is not None and result.first_seq > 1:
        print(f"note: the retained chain starts at seq {result.first_seq} (older files pruned)")
    return EXIT_OK if result.ok else EXIT_TAMPERED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``audit ...`` on its own (``argv`` without the program name)."""
    parser = argparse.ArgumentParser(prog="keybroker")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    result: int = args.handler(args)
    return result
