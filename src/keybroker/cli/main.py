"""The ``keybroker`` command: ``serve``, ``check``, ``init``, ``try``, ``kms``, ``audit``
and ``seal``.

``keybroker -conf-file PATH`` (key-proxy's own flag, no sub-command) means ``serve``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keybroker import __version__
from keybroker.errors import ConfigError
from keybroker.settings import Config

if TYPE_CHECKING:
    from keybroker.proxy.app import Proxy

__all__ = ["main"]

COMMANDS = ("serve", "check", "init", "try", "kms", "audit", "seal", "_worker")
#: what ``--help`` lists (``_worker`` is started by the supervisor, not by people)
PUBLIC_COMMANDS = "{serve,check,init,try,kms,audit,seal}"


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
    sub = parser.add_subparsers(dest="command", required=True, metavar=PUBLIC_COMMANDS)
    serve = sub.add_parser("serve", help="run the credential proxy until SIGTERM/SIGINT")
    _add_config_arg(serve)
    check = sub.add_parser("check", help="validate a config and print a summary (no secrets)")
    _add_config_arg(check)
    check.add_argument(
        "--strict", action="store_true", help="warnings (less safe than it could be) fail too"
    )
    worker = sub.add_parser("_worker")  # started by the supervisor, not by people
    worker.add_argument("--fd", type=int, required=True)
    worker.add_argument("--config-fd", type=int, required=True)
    worker.add_argument("--config-name", required=True)
    from keybroker.cli.audit import add_audit_parser
    from keybroker.cli.init import add_init_parser
    from keybroker.cli.kms import add_kms_parser
    from keybroker.cli.seal import add_seal_parser
    from keybroker.cli.tryout import add_try_parser

    add_init_parser(sub)
    add_try_parser(sub)
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
    from keybroker.config.loader import load

    return load(path)


def cmd_check(path: str, strict: bool = False) -> int:
    """Validate, print the summary, then what ``serve`` would fail on (exit 1) and what is
    less safe than it could be (warnings; exit 1 with ``--strict``)."""
    from datetime import UTC, datetime

    from keybroker.cli.preflight import preflight
    from keybroker.config.summary import render_summary

    config = _load_or_report(path)
    if config is None:
        return 1
    print(render_summary(config))
    found = preflight(config, datetime.now(UTC))
    for warning in found.warnings:
        print(f"{path}: {'error' if strict else 'warning'}: {warning}", file=sys.stderr)
    if found.problems:
        print(f"{path}: serve would not start:", file=sys.stderr)
        for problem in found.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 1 if strict and found.warnings else 0


def _load_or_report(path: str) -> Config | None:
    try:
        return _load(path)
    except ConfigError as exc:
        _report(path, "invalid config", exc)
        return None


def cmd_serve(path: str) -> int:
    """One process for ``Http.Workers: 1``; else a supervisor and that many workers."""
    from keybroker.config.summary import render_banner
    from keybroker.logs.setup import setup_logging
    from keybroker.server.listen import StartupFailed, run_until_signalled
    from keybroker.server.supervisor import Supervisor, worker_count

    config = _load_or_report(path)
    if config is None:
        return 1
    setup_logging(config.log)
    print(render_banner(config, worker_count(config.http.workers)), file=sys.stderr, flush=True)
    if worker_count(config.http.workers) > 1:
        return Supervisor(path, config, lambda text: _loads(text, path)).run()
    proxy = _proxy_or_report(path, config)
    if proxy is None:
        return 1
    try:
        run_until_signalled(proxy, reload=lambda: _load(path), watch=path)
    except StartupFailed as exc:
        print(f"{path}: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(fd: int, config_fd: int, name: str) -> int:
    """A worker process of a supervisor: serve on the inherited listening socket, with the
    configs the supervisor sends down the pipe ``config_fd`` (``name``: the user's file, for
    messages).  Exits ``EX_CONFIG`` when it cannot start, so the supervisor stops."""
    import socket

    from keybroker.logs.setup import setup_logging
    from keybroker.server.listen import StartupFailed, run_until_signalled
    from keybroker.server.workerchannel import EX_CONFIG, ConfigChannel

    channel = ConfigChannel(config_fd)
    try:
        text = channel.read_first()
    except EOFError:
        return 1  # the supervisor is gone before it sent anything: nothing to serve
    try:
        config = _loads(text, name)
    except ConfigError as exc:
        _report(name, "invalid config", exc)
        return EX_CONFIG
    setup_logging(config.log)
    sock = socket.socket(fileno=fd)
    proxy = _proxy_or_report(name, config)
    if proxy is None:
        return EX_CONFIG
    try:
        run_until_signalled(
            proxy, reload=lambda: _loads(channel.latest, name), sock=sock, channel=channel
        )
    except StartupFailed as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        return EX_CONFIG
    return 0


def _loads(text: str, name: str) -> Config:
    from keybroker.config.loader import loads

    return loads(text, name)


def _report(path: str, what: str, exc: ConfigError) -> None:
    print(f"{path}: {what}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _proxy_or_report(path: str, config: Config) -> Proxy | None:
    """The proxy, or ``None`` after printing why it cannot be built (a key service whose KMS
    cannot be set up, say)."""
    from keybroker.proxy.app import Proxy

    try:
        return Proxy(config)
    except ConfigError as exc:
        _report(path, "cannot start", exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        # ``keybroker check | head``: the reader left early; nothing of ours failed.  Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(_normalise(list(sys.argv[1:] if argv is None else argv)))
    if args.command == "serve":
        return cmd_serve(args.config)
    if args.command == "check":
        return cmd_check(args.config, args.strict)
    if args.command == "_worker":
        return cmd_worker(args.fd, args.config_fd, args.config_name)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a sub-command
        return 2
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
