"""``keybroker kms ...``: fetch a DEK, list stored ids, rotate the KEK and rewrap DEKs.

::

    keybroker kms get-dek --kms URI [--storage URI] --id ID --size N [--write-format F]
                          [--legacy-blobs off|read]
    keybroker kms list --storage URI [--prefix P]
    keybroker kms rotate --kms URI
    keybroker kms keygen PATH
    keybroker kms rewrap --kms URI --storage URI [--state FILE] [--prefix P] [--concurrency N]
                         [--legacy-blobs off|read]

``get-dek`` prints the DEK as hex; ``list`` prints one id per line; ``rotate`` makes a new KEK
version and prints it; ``rewrap`` re-seals every stored DEK under the newest KEK version,
drawing a progress bar on stderr and printing one report line (exit 1 if any id failed);
``keygen`` writes a new random 32-byte key file (a ``kms://local`` KEK), mode 0600, and refuses
to replace anything already at ``PATH`` (exit 1).
Exit codes: 0 success, 1 the operation failed (bad blob, service error, invalid id), 2 bad
usage or configuration (unparseable or incomplete URI, missing SDK).  Errors are one line on
stderr, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from keybroker.errors import KeybrokerError
from keybroker.kms.base import Openable, Rotatable
from keybroker.kms.errors import KMSConfigError, MissingExtra

__all__ = ["add_kms_parser", "cmd_keygen", "main"]

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
    _add_legacy_flag(get)
    get.set_defaults(handler=cmd_get_dek)
    lst = leaves.add_parser("list", help="list stored DEK ids")
    lst.add_argument("--storage", required=True, metavar="URI", help="storage://... URI")
    lst.add_argument("--prefix", default="", help="only ids starting with this")
    lst.set_defaults(handler=cmd_list)
    rot = leaves.add_parser("rotate", help="make a new KEK version (local, aws, gcp, azure)")
    rot.add_argument("--kms", required=True, metavar="URI", help="kms://... URI")
    rot.set_defaults(handler=cmd_rotate)
    gen = leaves.add_parser("keygen", help="write a new random 32-byte key file (0600)")
    gen.add_argument("path", metavar="PATH", help="the file to create (never replaced)")
    gen.set_defaults(handler=cmd_keygen)
    _add_rewrap_parser(leaves)
    return kms


def _add_rewrap_parser(leaves: Any) -> None:
    rew = leaves.add_parser("rewrap", help="re-seal every stored DEK under the newest KEK")
    rew.add_argument("--kms", required=True, metavar="URI", help="kms://... URI")
    rew.add_argument("--storage", required=True, metavar="URI", help="storage://... URI")
    rew.add_argument("--state", metavar="FILE", help="resume file (kept until a clean finish)")
    rew.add_argument("--prefix", default="", help="only ids starting with this")
    rew.add_argument("--concurrency", type=int, default=8, help="ids in flight (default 8)")
    _add_legacy_flag(rew)
    rew.set_defaults(handler=cmd_rewrap)


def _add_legacy_flag(parser: Any) -> None:
    parser.add_argument(
        "--legacy-blobs",
        choices=("off", "read"),
        default="off",
        help="read Constellation-format blobs, which nothing binds to their id (migration; "
        "rewrap upgrades them to keybroker envelopes); default: off",
    )


def cmd_get_dek(args: argparse.Namespace) -> int:
    """``kms get-dek``: print the DEK as hex."""
    return _guarded(_get_dek(args))


def cmd_list(args: argparse.Namespace) -> int:
    """``kms list``: print stored ids, one per line."""
    return _guarded(_list(args))


async def _get_dek(args: argparse.Namespace) -> None:
    from keybroker.kms import from_uris

    kms = from_uris(
        kms_uri=args.kms,
        storage_uri=args.storage,
        write_format=args.write_format,
        legacy_blobs=args.legacy_blobs,
    )
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


def cmd_keygen(args: argparse.Namespace) -> int:
    """``kms keygen PATH``: a new 0600 key file; 1 if anything is at PATH or it cannot be
    written."""
    from keybroker.kms.keyfiles import KEYGEN_BYTES, keygen

    try:
        keygen(args.path)
    except FileExistsError:
        print(
            f"keybroker kms: {args.path} already exists: refusing to replace it"
            " (a key file is never overwritten; remove it first if it is really unused)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        print(f"keybroker kms: cannot create {args.path}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote a new {KEYGEN_BYTES}-byte key to {args.path} (mode 0600)", file=sys.stderr)
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    """``kms rotate``: print the new KEK version."""
    return _guarded(_rotate(args))


def cmd_rewrap(args: argparse.Namespace) -> int:
    """``kms rewrap``: progress on stderr, the report line on stdout; 1 if any id failed."""
    return _guarded(_rewrap(args))


async def _rotate(args: argparse.Namespace) -> None:
    from keybroker.kms.registry import wrapper_from_uri
    from keybroker.kms.uri import parse_uri

    parsed = parse_uri(args.kms)
    if parsed.scheme != "kms" or parsed.name == "cluster-kms":
        raise KMSConfigError("--kms must name a key-wrapping kms:// URI (not cluster-kms)")
    wrapper = wrapper_from_uri(parsed)
    try:
        if not isinstance(wrapper, Rotatable):
            raise KMSConfigError(
                f"{parsed.label} cannot be rotated by keybroker: rotate it with the provider's "
                "tools, then run 'keybroker kms rewrap'"
            )
        if isinstance(wrapper, Openable):
            await wrapper.open()
        version = await wrapper.rotate()
    finally:
        await wrapper.close()
    print(version)


async def _rewrap(args: argparse.Namespace) -> bool:
    from keybroker.kms import ExternalKMS, from_uris
    from keybroker.kms.rewrap import rewrap_all

    kms = from_uris(kms_uri=args.kms, storage_uri=args.storage, legacy_blobs=args.legacy_blobs)
    if not isinstance(kms, ExternalKMS):
        await kms.close()
        raise KMSConfigError("rewrap needs an external KMS: cluster-kms stores nothing")
    bar = _ProgressBar(sys.stderr)
    try:
        report = await rewrap_all(
            kms,
            prefix=args.prefix,
            state_path=args.state,
            progress=bar.update,
            concurrency=args.concurrency,
        )
    finally:
        bar.finish()
        await kms.close()
    for key_id, reason in report.failures[:_MAX_LISTED_FAILURES]:
        _error(f"{key_id!r}: {reason}")
    resumed = f", resumed after {report.resumed_after!r}" if report.resumed_after else ""
    print(
        f"rewrap: {report.rewrapped} rewrapped, {report.skipped} skipped, {report.failed} "
        f"failed of {report.total} (KEK version {report.kek_version}{resumed})"
    )
    return report.failed == 0


_MAX_LISTED_FAILURES = 20


class _ProgressBar:
    """``[#####.....] done/total`` redrawn in place on a stream, at most ten times a second
    (plain text: no dependency, no colour)."""

    WIDTH = 30

    def __init__(self, stream: Any, *, interval: float = 0.1) -> None:
        self._stream, self._interval = stream, interval
        self._drawn_at = 0.0
        self._last: Any = None

    def update(self, p: Any) -> None:
        self._last = p
        now = time.monotonic()
        if now - self._drawn_at >= self._interval or p.done == p.total:
            self._drawn_at = now
            self._draw(p)

    def _draw(self, p: Any) -> None:
        filled = self.WIDTH * p.done // p.total if p.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(
            f"\rrewrap [{bar}] {p.done}/{p.total} "
            f"({p.rewrapped} rewrapped, {p.skipped} skipped, {p.failed} failed)"
        )
        self._stream.flush()

    def finish(self) -> None:
        if self._last is not None:
            self._draw(self._last)
            self._stream.write("\n")
            self._stream.flush()


def _guarded(coro: Any) -> int:
    """Run ``coro``; map our errors to an exit code and a one-line message.  A coroutine
    that returns ``False`` (some items failed, already reported) exits with 1."""
    try:
        succeeded = asyncio.run(coro)
    except (KMSConfigError, MissingExtra) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (KeybrokerError, ValueError, TypeError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
        return EXIT_FAILED
    return EXIT_FAILED if succeeded is False else EXIT_OK


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
