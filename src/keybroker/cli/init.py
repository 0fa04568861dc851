"""``keybroker init [DIR]``: a first configuration, with secure defaults, in one step.

::

    keybroker init [DIR] [--account NAME:VENDOR ...] [--non-interactive] [--port N]

Writes into ``DIR`` (default ``./keybroker``, created ``0700``, never over an existing
config):

* ``keys/master.key`` and ``keys/salt`` — the local master secret that seals the config's
  secrets (``keybroker seal init``), ``keys/kek.bin`` — a local key-encryption key for the
  key service, and ``keys/audit-signing.key`` (sealed) / ``.pub`` — the audit's signing key
  pair (``keybroker audit init``) (all ``0600``);
* ``config.yml`` (``0600``) — a commented config: loopback listener, audit on, both
  ``Forbidden`` refusals on, the ``Seal`` section, and one endpoint per account whose proxy
  credentials are generated here and whose real credentials are sealed as they are read:
  no secret is ever written in clear, echoed or passed on the command line.

Interactively it asks for the accounts and their real credentials (secrets without echo).
With ``--non-interactive`` the accounts come from ``--account NAME:VENDOR`` and each account's
real credential from one line of standard input: its values separated by spaces, in the
order the vendor's scheme needs them (``ACCESS_KEY SECRET_KEY`` for most vendors).  At the end
it prints the proxy credentials to give the platform, and the next commands.
Exit status: 0 done, 1 the sealing KMS failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from keybroker import signers
from keybroker.audit.keys import SEAL_ACCOUNT, SEAL_FIELD, generate_key_pair
from keybroker.cli.seal import create_master_secret
from keybroker.errors import KMSError
from keybroker.sealing import Sealer, sealed_reference
from keybroker.secret import Secret

__all__ = ["add_init_parser", "cmd_init"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Credential field -> the config's key; which fields are secret (sealed)
_KEYS = {
    "access_key": "AccessKey",
    "secret_key": "SecretKey",
    "access_token": "AccessToken",
    "client_token": "ClientToken",
    "client_secret": "ClientSecret",
}
_NOT_SECRET = frozenset({"access_key"})
_ALPHABET = string.ascii_uppercase + string.digits


class _UsageError(Exception):
    """Bad arguments or input; the message is printed as is (it holds no secret)."""


@dataclass
class _Account:
    name: str
    vendor: str
    real: dict[str, Secret]
    proxy: dict[str, Secret]


def add_init_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init", help="write a first config with sealed real credentials (asks for them)"
    )
    parser.add_argument("dir", nargs="?", default="./keybroker", help="default ./keybroker")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="NAME:VENDOR",
        help="an account (repeat); with --non-interactive its real credential is read from "
        "a line of stdin",
    )
    parser.add_argument("--non-interactive", action="store_true", help="ask nothing")
    parser.add_argument("--port", type=int, default=3888, help="listen port (on 127.0.0.1)")
    parser.set_defaults(handler=cmd_init)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    try:
        return _init(args)
    except _UsageError as exc:
        print(f"keybroker init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KMSError as exc:
        print(f"keybroker init: sealing failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (EOFError, KeyboardInterrupt):
        print("\nkeybroker init: stopped; nothing was written", file=sys.stderr)
        return EXIT_USAGE


def _init(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise _UsageError(f"--port must be 1..65535, got {args.port}")
    directory = Path(args.dir).expanduser().absolute()
    config_path = directory / "config.yml"
    if config_path.exists() or (directory / "keys").exists():
        raise _UsageError(f"{directory} already holds a keybroker setup: refusing to replace it")
    if args.non_interactive:
        accounts = _accounts_from(args.account, sys.stdin)
    else:
        accounts = _ask_accounts(args.account)
    keys = directory / "keys"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys.mkdir(mode=0o700)
        seal_uri = create_master_secret(keys)
        _write_new(keys / "kek.bin", os.urandom(32))
    except OSError as exc:
        raise _UsageError(f"cannot write into {directory}: {exc.strerror}") from None
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    with Sealer.from_uris(seal_uri) as sealer:

        def seal_audit_key(pem: str) -> str:
            return sealed_reference(sealer.seal(pem, account=SEAL_ACCOUNT, field=SEAL_FIELD))

        audit_key, _ = generate_key_pair(keys, seal_audit_key)
        text = _config_text(directory, args.port, seal_uri, accounts, sealer, audit_key)
    _write_new(config_path, text.encode("utf-8"))
    _report(config_path, accounts)
    return EXIT_OK


# --- the accounts ---------------------------------------------------------------------------


def _fields(vendor: str) -> tuple[str, ...]:
    try:
        return signers.get(vendor).credential_fields
    except KeyError:
        known = ", ".join(signers.known_vendors())
        raise _UsageError(f"unknown vendor {vendor!r} (known: {known})") from None


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, vendor = spec.partition(":")
    if not sep or not name or not vendor:
        raise _UsageError(f"--account wants NAME:VENDOR, got {spec!r}")
    _fields(vendor)
    return name, vendor


def _accounts_from(specs: list[str], stdin: TextIO) -> list[_Account]:
    if not specs:
        raise _UsageError("--non-interactive needs at least one --account NAME:VENDOR")
    accounts = []
    for spec in specs:
        name, vendor = _split_spec(spec)
        fields = _fields(vendor)
        values = stdin.readline().split()
        if len(values) != len(fields):
            wanted = " ".join(_KEYS[f] for f in fields)
            raise _UsageError(
                f"account {name}: expected one line of stdin with {len(fields)} values "
                f"({wanted}), got {len(values)}"
            )
        accounts.append(_new_account(name, vendor, dict(zip(fields, values, strict=True))))
    _check_unique(accounts)
    return accounts


def _ask_accounts(specs: list[str]) -> list[_Account]:
    pairs = [_split_spec(s) for s in specs]
    if not pairs:
        print("Accounts whose real credentials keybroker will hold (empty name to finish).")
        while True:
            name = input("Account name (CloudAccountName): ").strip()
            if not name:
                break
            vendor = input(f"Vendor [{'|'.join(signers.known_vendors())}] (aws): ").strip()
            pairs.append(_split_spec(f"{name}:{vendor or 'aws'}"))
    if not pairs:
        raise _UsageError("no account given")
    accounts = []
    for name, vendor in pairs:
        values = {}
        for field in _fields(vendor):
            prompt = f"{name}: real {_KEYS[field]}: "
            values[field] = input(prompt) if field in _NOT_SECRET else getpass.getpass(prompt)
        accounts.append(_new_account(name, vendor, values))
    _check_unique(accounts)
    return accounts


def _new_account(name: str, vendor: str, real: dict[str, str]) -> _Account:
    empty = [_KEYS[f] for f, v in real.items() if not v.strip()]
    if empty:
        raise _UsageError(f"account {name}: empty {', '.join(empty)}")
    proxy = {field: Secret(_generate(field, vendor)) for field in real}
    return _Account(name, vendor, {f: Secret(v.strip()) for f, v in real.items()}, proxy)


def _generate(field: str, vendor: str) -> str:
    if field == "access_key":
        prefix = signers.get(vendor).access_key_prefix
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(20 - len(prefix)))
    return secrets.token_urlsafe(30)  # 40 characters, 240 bits


def _check_unique(accounts: list[_Account]) -> None:
    names = [a.name for a in accounts]
    for name in names:
        if names.count(name) > 1:
            raise _UsageError(f"account {name!r} given twice")


# --- the files ------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _config_text(
    directory: Path,
    port: int,
    seal_uri: str,
    accounts: list[_Account],
    sealer: Sealer,
    audit_key: Path,
) -> str:
    lines = [
        "# Written by `keybroker init`.  key-proxy's config.yml format; see the README for every",
        "# setting.  Secrets are sealed (${sealed:...}): they open only with keys/master.key.",
        "Http:",
        f'  Address: "127.0.0.1:{port}"      # loopback only; put TLS in front for other hosts',
        "Log:",
        f"  Output: {_q(str(directory / 'log'))}",
        "  Level: info",
        "Audit:                           # a signed, hash-chained record of every request",
        "  Enabled: true",
        f"  Output: {_q(str(directory / 'audit'))}",
        f"  SigningKey: {_q(str(audit_key))}     # sealed; the .pub beside it is for auditors",
        "Forbidden:                       # refuse unknown accounts and bad proxy signatures",
        "  ForbiddenAccountNotFound: true",
        "  ForbiddenProxyCredentialErr: true",
        "Seal:",
        f"  KMS: {_q(seal_uri)}",
        "# The key service hands data keys to the platform (see README); ready, not enabled:",
        "KeyService:",
        "  Enabled: false",
        f"  KMS: {_q('kms://local?keyFile=' + str(directory / 'keys' / 'kek.bin'))}",
        f"  Storage: {_q('storage://file?path=' + str(directory / 'deks'))}",
        "Endpoints:",
    ]
    for account in accounts:
        lines += [
            f"  - CloudAccountName: {_q(account.name)}",
            f"    Vendor: {_q(account.vendor)}",
            "    Credentials:",
            "      Proxy:                     # generated: give these to the platform",
            *_credential_lines(account, "Proxy", account.proxy, sealer),
            "      Real:                      # yours: sealed, never written in clear",
            *_credential_lines(account, "Real", account.real, sealer),
        ]
    return "\n".join(lines) + "\n"


def _credential_lines(
    account: _Account, which: str, values: dict[str, Secret], sealer: Sealer
) -> list[str]:
    lines = []
    for field, value in values.items():
        key = _KEYS[field]
        if field in _NOT_SECRET:
            text = value.reveal()
        else:
            token = sealer.seal(value, account=account.name, field=f"{which}.{key}")
            text = sealed_reference(token)
        lines.append(f"        {key}: {_q(text)}")
    return lines


def _report(config_path: Path, accounts: list[_Account]) -> None:
    print(f"Wrote {config_path} (and keys/ beside it: keep them private and backed up).")
    print("\nGive the platform these proxy credentials (shown once; they are sealed in the file):")
    for account in accounts:
        shown = ", ".join(f"{_KEYS[f]}={v.reveal()}" for f, v in account.proxy.items())
        print(f"  {account.name} ({account.vendor}): {shown}")
    first = accounts[0].name
    print("\nNext:")
    print(f"  keybroker check --config {config_path}")
    print(f"  keybroker serve --config {config_path}")
    print(f"  keybroker try   --config {config_path} --account {first}")
