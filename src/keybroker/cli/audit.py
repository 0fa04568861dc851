"""``keybroker audit init`` and ``keybroker audit verify``.

::

    keybroker audit init [--dir DIR] [--seal CONFIG]  # a new audit signing key pair
    keybroker audit verify --public-key PUB DIR       # prove the log complete (auditor)
    keybroker audit verify PATH                       # the hash chain only (unkeyed)

``init`` writes ``audit-signing.key`` (0600; name it in ``Audit.SigningKey``) and
``audit-signing.pub`` (give it to the auditor) into ``DIR`` (default: the current directory),
and never replaces an existing key; with ``--seal CONFIG`` the private key file holds the key
sealed with that config's ``Seal`` KMS (opened when the config is read).

``verify --public-key`` checks the signed checkpoints and the chain (see
:mod:`keybroker.audit.proof`): ``OK: ...; complete and unchanged from T1 to T2 ...`` (plus an
``unproven:`` line for lines after the last checkpoint) and exit 0, or ``tampered: <where>:
<reason>`` and exit 1.  Without a key it checks the chain alone as before (``OK: N lines in M
files`` and a note that nothing proves no line is missing at the end or in whole files).
Exit 2 with a one-line message on stderr when a path or the key is missing or unreadable.
Never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keybroker.audit.checkpoint import CHECKPOINT_FILE_NAME
from keybroker.audit.keys import SEAL_ACCOUNT, SEAL_FIELD, generate_key_pair, load_public_key
from keybroker.audit.proof import verify_keyed
from keybroker.audit.verify import verify
from keybroker.errors import ConfigError, KMSError

__all__ = [
    "EXIT_OK",
    "EXIT_TAMPERED",
    "EXIT_USAGE",
    "UNKEYED_NOTE",
    "add_audit_parser",
    "cmd_init",
    "cmd_verify",
    "main",
]

EXIT_OK, EXIT_TAMPERED, EXIT_USAGE = 0, 1, 2
UNKEYED_NOTE = (
    "note: unkeyed check (no --public-key): edits, removals and reordering inside the chain "
    "are found, lines cut off its end or whole files removed are not"
)


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``audit`` command to an ``argparse`` sub-parser group; each leaf sets
    ``handler(args) -> exit code``."""
    audit: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="the tamper-evident audit log: signing key, verification"
    )
    leaves = audit.add_subparsers(dest="audit_command", required=True)
    check = leaves.add_parser("verify", help="check an audit directory (or one file)")
    check.add_argument("path", metavar="PATH", help="Audit.Output directory or one audit file")
    check.add_argument(
        "--public-key",
        metavar="PUB",
        action="append",
        help="the audit public key: prove the directory complete up to its last checkpoint "
        "(repeat it for each key the log was signed with, after a key change)",
    )
    check.set_defaults(handler=cmd_verify)
    init = leaves.add_parser("init", help="generate the audit signing key pair")
    init.add_argument("--dir", default=".", help="where to write the two key files")
    init.add_argument(
        "--seal",
        metavar="CONFIG",
        help="store the private key sealed with the Seal section of this config",
    )
    init.set_defaults(handler=cmd_init)
    return audit


def cmd_init(args: argparse.Namespace) -> int:
    """``audit init``: 0 written, 2 when a key exists already or the directory is unusable."""
    try:
        private, public = generate_key_pair(str(args.dir), _sealer(args.seal))
    except (ConfigError, KMSError) as exc:
        print(f"keybroker audit init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileExistsError as exc:
        print(f"keybroker audit init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        print(f"keybroker audit init: {args.dir}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    print(f"private key: {private} (mode 0600; set Audit.SigningKey to this path)")
    print(f"public key:  {public} (for the auditor: keybroker audit verify --public-key)")
    return EXIT_OK


def _sealer(config: str | None) -> Callable[[str], str] | None:
    """Seal with the ``Seal`` section of ``config`` (account ``_audit``, field
    ``Audit.SigningKey``); ``None`` without a config.  Raises ``ConfigError``/``KMSError``."""
    if not config:
        return None
    from keybroker.sealing import Sealer, sealed_reference

    uris = _seal_uris(config)  # a config without a Seal section fails before a key is made

    def seal(pem: str) -> str:
        with Sealer.from_uris(*uris) as sealer:
            token = sealer.seal(pem, account=SEAL_ACCOUNT, field=SEAL_FIELD)
            if sealer.open(token, account=SEAL_ACCOUNT, field=SEAL_FIELD) != pem:
                raise KMSError("the KMS returned a different key for the same id")
        return sealed_reference(token)

    return seal


def _seal_uris(config: str) -> tuple[str, str | None]:
    import yaml

    try:
        with open(config, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh.read(1024 * 1024))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config}: cannot read the config ({type(exc).__name__})") from None
    seal = doc.get("Seal") if isinstance(doc, dict) else None
    kms = seal.get("KMS") if isinstance(seal, dict) else None
    if not isinstance(kms, str) or not kms:
        raise ConfigError(f"{config}: no Seal section with a KMS")
    storage = seal.get("Storage") if isinstance(seal, dict) else None
    return kms, storage if isinstance(storage, str) and storage else None


def cmd_verify(args: argparse.Namespace) -> int:
    """``audit verify``: 0 sound, 1 tampered, 2 missing or unreadable path or key."""
    path = str(args.path)
    key_paths = getattr(args, "public_key", None)
    if isinstance(key_paths, str):
        key_paths = [key_paths]
    try:
        if key_paths:
            return _keyed(path, [str(k) for k in key_paths])
        result = verify(path)
    except FileNotFoundError:
        print(f"keybroker audit verify: {path}: no such file or directory", file=sys.stderr)
        return EXIT_USAGE
    except NotADirectoryError:
        print(f"keybroker audit verify: {path}: --public-key needs the directory", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        print(f"keybroker audit verify: {path}: cannot read: {reason}", file=sys.stderr)
        return EXIT_USAGE
    print(result)
    if result.ok and result.first_seq is not None and result.first_seq > 1:
        print(f"note: the retained chain starts at seq {result.first_seq} (older files pruned)")
    if result.ok:
        keyed = Path(path).is_dir() and (Path(path) / CHECKPOINT_FILE_NAME).exists()
        print(
            UNKEYED_NOTE + ("; this log has signed checkpoints: add --public-key" if keyed else "")
        )
    return EXIT_OK if result.ok else EXIT_TAMPERED


def _keyed(path: str, key_paths: list[str]) -> int:
    keys = []
    for key_path in key_paths:
        try:
            keys.append(load_public_key(key_path))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            print(f"keybroker audit verify: {key_path}: cannot read: {reason}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as exc:
            print(f"keybroker audit verify: {key_path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    result = verify_keyed(path, keys)
    print(result)
    return EXIT_OK if result.ok else EXIT_TAMPERED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``audit ...`` on its own (``argv`` without the program name)."""
    parser = argparse.ArgumentParser(prog="keybroker")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    result: int = args.handler(args)
    return result
