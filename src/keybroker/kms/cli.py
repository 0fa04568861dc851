"""``keybroker kms ...``: fetch a DEK or list stored ids from the command line.

::

    keybroker kms get-dek --kms URI [--storage URI] --id ID --size N [--write-format F]
    keybroker kms list --storage URI [--prefix P]

``get-dek`` prints the DEK as hex; ``list`` prints one id per line.  Exit codes: 0 success,
1 the operation failed (bad blob, service error, invalid id), 2 bad usage or configuration
(unparseable or incomplete URI, missing SDK).  Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from keybroker.errors import KeybrokerError
from keybroker.kms.errors import KMSConfigError, MissingExtra

__all__ = ["add_kms_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_kms_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``kms`` command to an ``argparse`` sub-parser group; each leaf sets
    ``handler(args) -> exit code``."""
    kms: argparse.ArgumentParser = subparsers.add_parser(
        "kms", help="data-encryption keys from a KMS URI"
    )
    leaves = kms.add_subparsers(dest="kms_command", required=True)
    get = leaves.add_parser("get-dek", help="print the DEK for an id (hex), creating it if new")
    get.add_argument("--kms", required=True, metavar="URI", help="kms://... URI")
    get.add_argument("--storage", metavar="URI", help="storage://... URI (none: no-store)")
    get.add_argument("--id", required=True, dest="dek_id", help="DEK id")
    get.add_argument("--size", required=True, type=int, help="DEK size in bytes")
    get.add_argument(
        "--write-format",
        choices=("keybroker", "constellation"),
        default="keybroker",
        help="blob format for a new DEK (default: keybroker)",
    )
    get.set_defaults(handler=cmd_get_dek)
    lst = leaves.add_parser("list", help="list stored DEK ids")
    lst.add_argument("--storage", required=True, metavar="URI", help="storage://... URI")
    lst.add_argument("--prefix", default="", help="only ids starting with this")
    lst.set_defaults(handler=cmd_list)
    return kms


def cmd_get_dek(args: argparse.Namespace) -> int:
    """``kms get-dek``: print the DEK as hex."""
    return _guarded(_get_dek(args))


def cmd_list(args: argparse.Namespace) -> int:
    """``kms list``: print stored ids, one per line."""
    return _guarded(_list(args))


async def _get_dek(args: argparse.Namespace) -> None:
    from keybroker.kms import from_uris

    kms = from_uris(kms_uri=args.kms, storage_uri=args.storage, write_format=args.write_format)
    try:
        dek = await kms.get_dek(args.dek_id, args.size)
    finally:
        await kms.close()
    print(dek.hex())


async def _list(args: argparse.Namespace) -> None:
    from keybroker.kms.registry import storage_from_uri
    from keybroker.kms.uri import parse_uri

    parsed = parse_uri(args.storage)
    if parsed.scheme != "storage":
        raise KMSConfigError(f"--storage must be a storage:// URI, not {parsed.scheme}://")
    storage = storage_from_uri(parsed)
    try:
        ids = await storage.list(args.prefix)
    finally:
        await storage.close()
    for key_id in ids:
        print(key_id)


def _guarded(coro: Any) -> int:
    """Run ``coro``; map our errors to an exit code and a one-line message."""
    try:
        asyncio.run(coro)
    except (KMSConfigError, MissingExtra) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (KeybrokerError, ValueError, TypeError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
        return EXIT_FAILED
    return EXIT_OK


def _error(message: str) -> None:
    print(f"keybroker kms: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``kms`` alone (``argv`` without the leading ``kms``); returns the exit
    code instead of raising ``SystemExit``."""
    parser = argparse.ArgumentParser(prog="keybroker")
    add_kms_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["kms", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:  # argparse already printed usage and the problem
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    result: int = args.handler(args)
    return result
