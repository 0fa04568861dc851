"""``keybroker seal ...``: make the master secret, seal credential values, rewrite a config.

::

    keybroker seal init --dir DIR
    keybroker seal [--config PATH] --account NAME [--field Real.SecretKey] [--value-file FILE]
    keybroker seal [--config PATH] --rewrite

``init`` writes a random master secret and salt into ``DIR`` (files ``0600``, never replaced)
and prints the ``Seal:`` section to add to the config: a cluster KMS that needs no cloud.
The second form reads the secret from ``--value-file`` or stdin (without echo on a terminal)
and prints the ``${sealed:...}`` text for that account's field, never the secret.
``--rewrite`` seals every plaintext secret (``SecretKey``, ``AccessToken``, ``ClientToken``,
``ClientSecret``) of the config in place, keeping the rest of the file as it is.

The KMS comes from the config's ``Seal`` section (``KMS: kms://...``, ``Storage:
storage://...``).  Exit codes: 0 success, 1 the KMS failed, 2 bad usage or configuration.
Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keybroker.errors import ConfigError, KMSError
from keybroker.sealing import Sealer, normalise_field, sealed_reference
from keybroker.secret import Secret, constant_time_equal

__all__ = ["add_seal_parser", "cmd_init", "cmd_seal", "cmd_show", "create_master_secret"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MASTER_FILE, SALT_FILE = "master.key", "salt"
_SECRET_BYTES = 32
_MAX_VALUE_BYTES = 64 * 1024
_MAX_CONFIG_BYTES = 1024 * 1024
_ESCAPED = re.compile(r"\$\$+\{")
#: Credential keys whose plaintext ``--rewrite`` seals (access key ids are not secret).
REWRITE_KEYS = ("SecretKey", "AccessToken", "ClientToken", "ClientSecret")


class _UsageError(Exception):
    """Bad arguments or config; the message is printed as is (it holds no secret)."""


def add_seal_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``seal`` command to an ``argparse`` sub-parser group; each form sets
    ``handler(args) -> exit code``."""
    seal: argparse.ArgumentParser = subparsers.add_parser(
        "seal", help="seal credential values with the config's KMS (see 'seal init')"
    )
    seal.add_argument("--config", "-c", default="./config.yml", metavar="PATH", help="config file")
    seal.add_argument("--account", metavar="NAME", help="the endpoint's CloudAccountName")
    seal.add_argument(
        "--field", default="Real.SecretKey", help="credential field (default Real.SecretKey)"
    )
    seal.add_argument("--value-file", metavar="FILE", help="read the secret here, not stdin")
    seal.add_argument(
        "--rewrite", action="store_true", help="seal every plaintext secret of the config in place"
    )
    seal.set_defaults(handler=cmd_seal)
    leaves = seal.add_subparsers(dest="seal_command")
    init = leaves.add_parser("init", help="make a master secret and print the Seal section")
    init.add_argument("--dir", required=True, metavar="DIR", help="where to write the key files")
    init.set_defaults(handler=cmd_init)
    show = leaves.add_parser(
        "show", help="list every credential secret: sealed (and whether it opens) or in clear"
    )
    show.add_argument(
        "--config", "-c", default=argparse.SUPPRESS, metavar="PATH", help="config file"
    )
    show.set_defaults(handler=cmd_show)
    return seal


def _guarded(run: Any, args: argparse.Namespace) -> int:
    try:
        result: int = run(args)
        return result
    except (_UsageError, ConfigError, ValueError) as exc:
        print(f"keybroker seal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KMSError, TimeoutError) as exc:
        print(f"keybroker seal: the KMS failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


# --- init ------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """``seal init``: write the key files, print the ``Seal:`` section on stdout."""
    return _guarded(_init, args)


def _init(args: argparse.Namespace) -> int:
    directory = Path(args.dir).expanduser().absolute()
    uri = create_master_secret(directory)
    print(
        f"# Keep {directory} private and backed up: without {MASTER_FILE} and {SALT_FILE},\n"
        "# sealed values cannot be opened.  Add this section to the config:",
        file=sys.stderr,
    )
    print(f"Seal:\n  KMS: {json.dumps(uri)}")
    return EXIT_OK


def create_master_secret(directory: Path) -> str:
    """Write a random master secret and salt into ``directory`` (``0600``, never replacing a
    file) and return the cluster-KMS URI of the ``Seal`` section.  Raises ``ValueError``
    (the message names the file)."""
    master, salt_file = directory / MASTER_FILE, directory / SALT_FILE
    for path in (master, salt_file):
        if path.exists():
            raise ValueError(
                f"{path} already exists: refusing to replace it "
                "(values sealed with it could no longer be opened)"
            )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(master, _b64url(os.urandom(_SECRET_BYTES)))
        salt = _b64url(os.urandom(_SECRET_BYTES))
        _write_new(salt_file, salt)
    except OSError as exc:
        raise ValueError(f"cannot write into {directory}: {exc.strerror}") from None
    return _cluster_uri(master, salt)


def _cluster_uri(master: Path, salt: str) -> str:
    """``kms://cluster-kms?key=file:PATH&salt=...`` with ``PATH`` %-escaped for the URI."""
    path = urllib.parse.quote(str(master), safe="/-_.~+")
    return f"kms://cluster-kms?key=file:{path}&salt={salt}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` (``0600``, never an existing file) holding ``text`` and a newline."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# --- reading the config (only what sealing needs: other references need not resolve) --------


@dataclass
class _ConfigView:
    text: str
    root: MappingNode
    kms: str
    storage: str | None
    endpoints: list[tuple[str, MappingNode]]


def _read_view(path: str) -> _ConfigView:
    """The config's Seal URIs and endpoints.  Raises ``_UsageError``."""
    try:
        data = Path(path).read_bytes()[: _MAX_CONFIG_BYTES + 1]
        text = data.decode("utf-8").removeprefix("\ufeff")
    except OSError as exc:
        raise _UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise _UsageError(f"{path}: not UTF-8 text") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise _UsageError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        raise _UsageError(f"{path}: invalid YAML (run 'keybroker check' for details)") from None
    if not isinstance(root, MappingNode):
        raise _UsageError(f"{path}: expected a mapping of sections")
    kms, storage = _seal_section(path, root)
    return _ConfigView(text, root, kms, storage, _endpoints(root))


def _get(node: Node | None, key: str) -> Node | None:
    """The value of ``key`` (any case) in a mapping node."""
    if not isinstance(node, MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, ScalarNode) and str(k.value).lower() == key.lower():
            found: Node = v
            return found
    return None


def _text(node: Node | None) -> str | None:
    if isinstance(node, ScalarNode) and node.tag != "tag:yaml.org,2002:null":
        return str(node.value)
    return None


def _seal_section(path: str, root: MappingNode) -> tuple[str, str | None]:
    seal = _get(root, "Seal")
    kms = _text(_get(seal, "KMS"))
    if not kms:
        raise _UsageError(
            f"{path}: no Seal.KMS in the config (make one with 'keybroker seal init --dir DIR')"
        )
    return kms, _text(_get(seal, "Storage")) or None


def _endpoints(root: MappingNode) -> list[tuple[str, MappingNode]]:
    node = _get(root, "Endpoints")
    items = node.value if isinstance(node, SequenceNode) else []
    return [
        (_text(_get(ep, "CloudAccountName")) or "", ep)
        for ep in items
        if isinstance(ep, MappingNode)
    ]


# --- show ------------------------------------------------------------------------------------

_SEALED = re.compile(r"\$\{sealed:([^}]*)\}")


def cmd_show(args: argparse.Namespace) -> int:
    """``seal show``: one line per credential secret of the config — sealed and opening,
    sealed but NOT opening (exit 1), a reference, or in clear — never a value."""
    return _guarded(_show, args)


def _show(args: argparse.Namespace) -> int:
    view = _read_view(args.config)
    rows: list[tuple[str, str, str]] = []
    failed = clear = 0
    with Sealer.from_uris(view.kms, view.storage) as sealer:
        for i, (account, ep) in enumerate(view.endpoints):
            for field, node in _credential_scalars(ep):
                state = _state(sealer, account, field, _text(node) or "")
                failed += state.startswith("sealed, DOES NOT OPEN")
                clear += state == "in clear"
                rows.append((f"Endpoints[{i}] ({account or '?'})", field, state))
    width = max((len(r[0]) for r in rows), default=0)
    fwidth = max((len(r[1]) for r in rows), default=0)
    print(f"Seal.KMS {_scheme(view.kms)}")
    for where, field, state in rows:
        print(f"  {where:{width}}  {field:{fwidth}}  {state}")
    if clear:
        print(f"{clear} secret(s) in clear: 'keybroker seal --config FILE --rewrite' seals them")
    return EXIT_FAILED if failed else EXIT_OK


def _state(sealer: Sealer, account: str, field: str, raw: str) -> str:
    if not raw:
        return "empty"
    found = _SEALED.fullmatch(raw)
    if found is None:
        return "reference" if raw.startswith("${") and not _ESCAPED.match(raw) else "in clear"
    try:
        sealer.open(found.group(1), account=account, field=field)
    except (ConfigError, KMSError, ValueError) as exc:
        return f"sealed, DOES NOT OPEN: {exc}"
    return "sealed, opens"


def _scheme(uri: str) -> str:
    """``kms://cluster-kms`` of a KMS URI: its parameters may hold secrets."""
    return uri.split("?", 1)[0]


# --- seal one value --------------------------------------------------------------------------


def cmd_seal(args: argparse.Namespace) -> int:
    """``seal``: print the ``${sealed:...}`` text for one value, or ``--rewrite`` the config."""
    if args.rewrite:
        return _guarded(_rewrite, args)
    return _guarded(_seal_one, args)


def _seal_one(args: argparse.Namespace) -> int:
    if not args.account:
        raise _UsageError("--account is required (or --rewrite, or the 'init' command)")
    field = normalise_field(args.field)
    view = _read_view(args.config)
    names = [name for name, _ in view.endpoints]
    if args.account not in names:
        known = ", ".join(n for n in names if n) or "none"
        raise _UsageError(f"{args.config}: no endpoint named {args.account!r} (known: {known})")
    value = _read_value(args.value_file)
    with Sealer.from_uris(view.kms, view.storage) as sealer:
        token = _seal_checked(sealer, value, args.account, field)
    print(sealed_reference(token))
    return EXIT_OK


def _seal_checked(sealer: Sealer, value: Secret, account: str, field: str) -> str:
    """Seal, then open once: a KMS that cannot give the same DEK back fails here, not later."""
    token = sealer.seal(value, account=account, field=field)
    if not constant_time_equal(sealer.open(token, account=account, field=field), value.reveal()):
        raise KMSError("the KMS returned a different key for the same id")
    return token


def _read_value(path: str | None) -> Secret:
    """The secret from ``path`` or stdin, minus one trailing newline.  Raises ``_UsageError``."""
    if path is None and sys.stdin.isatty():
        text = getpass.getpass("secret to seal (not echoed): ")
    else:
        try:
            raw = _read_bytes(path)
            text = raw.decode("utf-8")
        except OSError as exc:
            raise _UsageError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise _UsageError("the secret is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise _UsageError("the secret is empty")
    return Secret(text)


def _read_bytes(path: str | None) -> bytes:
    if path is None:
        data = sys.stdin.buffer.read(_MAX_VALUE_BYTES + 3)
    else:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_VALUE_BYTES + 3)
    if len(data) > _MAX_VALUE_BYTES + 2:
        raise _UsageError(f"the secret is larger than {_MAX_VALUE_BYTES} bytes")
    return data


# --- rewrite the whole config ----------------------------------------------------------------


@dataclass
class _Target:
    where: str  # Endpoints[i].Credentials.Real.SecretKey, for messages
    account: str
    field: str  # Credentials.Real.SecretKey
    node: ScalarNode
    value: Secret


def _rewrite(args: argparse.Namespace) -> int:
    view = _read_view(args.config)
    targets, skipped = _targets(view)
    for where, why in skipped:
        print(f"keybroker seal: left {where} as it is ({why})", file=sys.stderr)
    if not targets:
        print("keybroker seal: no plaintext secret to seal", file=sys.stderr)
        return EXIT_OK
    with Sealer.from_uris(view.kms, view.storage) as sealer:
        tokens = [_seal_checked(sealer, t.value, t.account, t.field) for t in targets]
    _replace_in_place(args.config, _splice(view.text, targets, tokens))
    for target in targets:
        print(f"keybroker seal: sealed {target.where}", file=sys.stderr)
    return EXIT_OK


def _targets(view: _ConfigView) -> tuple[list[_Target], list[tuple[str, str]]]:
    """Every plaintext secret scalar that can be replaced in place, and those that cannot."""
    counts = _node_counts(view.root)
    targets: list[_Target] = []
    skipped: list[tuple[str, str]] = []
    for i, (account, ep) in enumerate(view.endpoints):
        for field, node in _credential_scalars(ep):
            where = f"Endpoints[{i}].{field}"
            raw = _text(node)
            if not raw or not account or (raw.startswith("${") and not _ESCAPED.match(raw)):
                continue  # empty, unnamed, or already a reference: nothing to seal
            if _ESCAPED.match(raw):
                raw = raw[1:]  # "$${...}" stands for the literal text "${...}"
            why = _why_not_in_place(view.text, node, counts)
            if why:
                skipped.append((where, why))
            else:
                targets.append(_Target(where, account, field, node, Secret(raw)))
    return targets, skipped


def _credential_scalars(ep: MappingNode) -> list[tuple[str, ScalarNode]]:
    creds = _get(ep, "Credentials")
    roles: list[tuple[str, Node | None]] = [
        ("Proxy", _get(creds, "Proxy")),
        ("Real", _get(creds, "Real")),
    ]
    extra = _get(creds, "AdditionalProxies")
    if isinstance(extra, SequenceNode):
        roles += [(f"AdditionalProxies[{j}]", n) for j, n in enumerate(extra.value)]
    out = []
    for role, cred in roles:
        for key in REWRITE_KEYS:
            node = _get(cred, key)
            if isinstance(node, ScalarNode):
                out.append((f"Credentials.{role}.{key}", node))
    return out


def _node_counts(root: Node) -> dict[int, int]:
    """How often each node object occurs (an alias makes one node appear twice)."""
    counts: dict[int, int] = {}
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        counts[id(node)] = counts.get(id(node), 0) + 1
        if counts[id(node)] > 1:
            continue
        if isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return counts


def _why_not_in_place(text: str, node: ScalarNode, counts: dict[int, int]) -> str | None:
    if counts.get(id(node), 0) > 1:
        return "shared through a YAML alias"
    if node.style not in (None, "'", '"'):
        return "a block scalar"
    start, end = node.start_mark.index, node.end_mark.index
    span = text[start:end]
    if span[:1] in ("&", "!"):
        return "it has a YAML anchor or tag"
    if "\n" in span:
        return "it spans several lines"
    return None


def _splice(text: str, targets: list[_Target], tokens: list[str]) -> str:
    """``text`` with each target's scalar replaced by its quoted sealed reference."""
    edits = sorted(
        (
            (t.node.start_mark.index, t.node.end_mark.index, tok)
            for t, tok in zip(targets, tokens, strict=True)
        ),
        reverse=True,
    )
    for start, end, token in edits:
        text = text[:start] + json.dumps(sealed_reference(token)) + text[end:]
    return text


def _replace_in_place(path: str, text: str) -> None:
    """Write ``text`` over ``path`` atomically, keeping its permissions."""
    target = Path(path)
    mode = target.stat().st_mode & 0o777
    tmp = target.with_name(f".{target.name}.seal-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _UsageError(f"cannot rewrite {path}: {exc.strerror}") from None
