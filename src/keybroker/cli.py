"""The ``keybroker`` command: ``serve``, ``check``, ``kms``, ``audit`` and ``seal``.

``keybroker -conf-file PATH`` (key-proxy's own flag, no sub-command) means ``serve``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keybroker import __version__
from keybroker.config import Config
from keybroker.errors import ConfigError

if TYPE_CHECKING:
    from keybroker.proxy import Proxy

__all__ = ["main"]

COMMANDS = ("serve", "check", "kms", "audit", "seal", "_worker")


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        "-conf-file",
        "--conf-file",
        dest="config",
        default="./config.yml",
        metavar="PATH",
        help="config file (key-proxy's config.yml format); default ./config.yml",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keybroker", description="Hold your own keys: credential proxy and KMS."
    )
    parser.add_argument("--version", action="version", version=f"keybroker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the credential proxy until SIGTERM/SIGINT")
    _add_config_arg(serve)
    check = sub.add_parser("check", help="validate a config and print a summary (no secrets)")
    _add_config_arg(check)
    worker = sub.add_parser("_worker")  # started by the supervisor, not by people
    worker.add_argument("--fd", type=int, required=True)
    worker.add_argument("--config", required=True)
    from keybroker.audit_cli import add_audit_parser
    from keybroker.kms.cli import add_kms_parser
    from keybroker.seal_cli import add_seal_parser

    add_kms_parser(sub)
    add_audit_parser(sub)
    add_seal_parser(sub)
    return parser


def _normalise(argv: list[str]) -> list[str]:
    """key-proxy is started as ``key-proxy -conf-file PATH``: treat that as ``serve``."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        return ["serve", *argv]
    return argv


def _load(path: str) -> Config:
    from keybroker.config_load import load

    return load(path)


def cmd_check(path: str) -> int:
    from keybroker.summary import render_summary

    config = _load_or_report(path)
    if config is None:
        return 1
    print(render_summary(config))
    return 0


def _load_or_report(path: str) -> Config | None:
    try:
        return _load(path)
    except ConfigError as exc:
        print(f"{path}: invalid config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_serve(path: str) -> int:
    """One process for ``Http.Workers: 1``; else a supervisor and that many workers."""
    from keybroker.logs import setup_logging
    from keybroker.serving import run_until_signalled
    from keybroker.supervisor import Supervisor, worker_count

    config = _load_or_report(path)
    if config is None:
        return 1
    setup_logging(config.log)
    if worker_count(config.http.workers) > 1:
        return Supervisor(path, config, lambda: _load(path)).run()
    proxy = _proxy_or_report(path, config)
    if proxy is None:
        return 1
    run_until_signalled(proxy, reload=lambda: _load(path), watch=path)
    return 0


def cmd_worker(fd: int, path: str) -> int:
    """A worker process of a supervisor: serve on the inherited listening socket."""
    import socket

    from keybroker.logs import setup_logging
    from keybroker.serving import run_until_signalled

    config = _load_or_report(path)
    if config is None:
        return 1
    setup_logging(config.log)
    sock = socket.socket(fileno=fd)
    proxy = _proxy_or_report(path, config)
    if proxy is None:
        return 1
    run_until_signalled(proxy, reload=lambda: _load(path), sock=sock)
    return 0


def _proxy_or_report(path: str, config: Config) -> Proxy | None:
    """The proxy, or ``None`` after printing why it cannot be built (a key service whose KMS
    cannot be set up, say)."""
    from keybroker.proxy import Proxy

    try:
        return Proxy(config)
    except ConfigError as exc:
        print(f"{path}: cannot start:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_normalise(list(sys.argv[1:] if argv is None else argv)))
    if args.command == "serve":
        return cmd_serve(args.config)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "_worker":
        return cmd_worker(args.fd, args.config)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a sub-command
        return 2
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
