"""Secret references in credential fields, and the ``Seal`` section that opens sealed values.

A credential value may be a reference instead of the secret itself (the syntax is described
in :mod:`keybroker.config.loader`): ``${NAME}`` reads the environment, ``${file:PATH}`` a file,
``${prefix:rest}`` a resolver added with :func:`register_secret_resolver`, and
``${sealed:...}`` is opened with the KMS of the top-level ``Seal`` section while the endpoints
are read (:func:`unsealing`).  ``$${`` escapes a literal ``${``.

Every error is a ``ConfigError`` whose message names the reference, never the secret.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping

from yaml.nodes import Node

from keybroker.config.yamlform import Reader
from keybroker.errors import ConfigError, KMSError
from keybroker.metrics.instruments import KMSOperations

__all__ = [
    "MAX_SECRET_FILE_BYTES",
    "SecretResolver",
    "register_secret_resolver",
    "resolve_secret",
    "resolvers_for",
    "unsealing",
]

MAX_SECRET_FILE_BYTES = 64 * 1024

#: A secret resolver gets the text after ``prefix:`` and returns the secret; it raises
#: ``ConfigError`` with a message that names no secret when it cannot.
SecretResolver = Callable[[str], str]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PREFIX_REF = re.compile(r"\$\{([a-z][a-z0-9_-]*):(.*)\}", re.DOTALL)
# "$${" is a literal "${"; "$$${" a literal "$${", and so on: one "$" is removed.
_ESCAPED_REF = re.compile(r"\$\$+\{")
_PREFIX_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_SEAL_KEYS = ("KMS", "Storage")


def _read_secret_file(ref: str) -> str:
    """``${file:PATH}``: the file's text minus one trailing newline.  Raises ``ConfigError``."""
    path = os.path.expanduser(ref)
    if not path:
        raise ConfigError("${file:...} needs a path")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read secret file '{path}': {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"secret file '{path}' is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"secret file '{path}' is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"secret file '{path}' is empty")
    return text


def _sealed_without_kms(ref: str) -> str:
    """``${sealed:...}`` until a KMS registers a real resolver.  Raises ``ConfigError``."""
    raise ConfigError("sealed values need a KMS (not configured)")


_resolvers: dict[str, SecretResolver] = {"file": _read_secret_file, "sealed": _sealed_without_kms}


def register_secret_resolver(prefix: str, fn: SecretResolver) -> None:
    """Make ``${prefix:rest}`` resolve to ``fn(rest)``; replaces an earlier resolver.

    Raises ``ValueError`` if ``prefix`` is not lower-case letters, digits, ``-`` or ``_``.
    """
    if not _PREFIX_NAME.fullmatch(prefix):
        raise ValueError("secret resolver prefix must match [a-z][a-z0-9_-]*")
    if not callable(fn):
        raise TypeError("secret resolver must be callable")
    _resolvers[prefix] = fn


def resolvers_for(r: Reader, path: str) -> Mapping[str, SecretResolver]:
    """The secret resolvers for the credential field at ``path``: the registered ones, with
    ``sealed`` bound to the endpoint being read and the field while a Seal section is open."""
    if r.unseal is None:
        return _resolvers
    where, account = r.endpoint
    inside = path[len(where) + 1 :] if path.startswith(f"{where}.") else path
    opener = functools.partial(r.unseal, account=account, field=inside)
    return {**_resolvers, "sealed": opener}


def resolve_secret(
    raw: str, env: Mapping[str, str], resolvers: Mapping[str, SecretResolver] | None = None
) -> str:
    """Expand one credential value (``resolvers`` replaces the registered ones).

    Raises ``ConfigError`` (message without the value)."""
    resolvers = _resolvers if resolvers is None else resolvers
    if _ESCAPED_REF.match(raw):
        return raw[1:]
    if not raw.startswith("${"):
        return raw
    if m := _ENV_REF.fullmatch(raw):
        name = m.group(1)
        value = env.get(name)
        if value is None:
            raise ConfigError(f"environment variable {name} is not set")
        if not value:
            raise ConfigError(f"environment variable {name} is empty")
        return value
    if m := _PREFIX_REF.fullmatch(raw):
        prefix, rest = m.group(1), m.group(2)
        resolver = resolvers.get(prefix)
        if resolver is None:
            known = ", ".join(sorted(resolvers))
            raise ConfigError(f"unknown secret reference '${{{prefix}:...}}' (known: {known})")
        return _call_resolver(prefix, resolver, rest)
    raise ConfigError(
        "not a valid secret reference (use ${NAME} or ${prefix:...}; "
        "write $${ for a literal value starting with ${)"
    )


def _call_resolver(prefix: str, resolver: SecretResolver, rest: str) -> str:
    """Run a plug-in resolver; anything it raises becomes a ``ConfigError`` without details
    unless it is already ours (our messages never carry secrets; others' might)."""
    try:
        value = resolver(rest)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"the '{prefix}' resolver failed ({type(exc).__name__})") from None
    if not isinstance(value, str):
        raise ConfigError(f"the '{prefix}' resolver did not return a string")
    return value


# --- the Seal section ------------------------------------------------------------------------


def _seal_uris(r: Reader, node: Node) -> tuple[str, str | None] | None:
    """``Seal: {KMS: kms://..., Storage: storage://...}``; ``None`` if absent or broken."""
    m = r.mapping(node, "Seal", _SEAL_KEYS)
    if m is None:
        return None
    kms = r.string(m["KMS"], "Seal.KMS") if "KMS" in m else None
    storage = r.string(m["Storage"], "Seal.Storage") if "Storage" in m else None
    if not kms:
        if "Seal.KMS" not in r.p.failed:
            r.p.add("Seal.KMS", "required field is missing (a kms:// URI)")
        return None
    return kms, storage or None


@contextlib.contextmanager
def unsealing(r: Reader, node: Node | None) -> Iterator[None]:
    """While the endpoints are read, open ``${sealed:...}`` values with the Seal section's KMS
    (built here, closed after)."""
    uris = _seal_uris(r, node) if node is not None and not r.is_null(node) else None
    if uris is None:
        if node is not None and not r.is_null(node):
            r.unseal = _broken_seal_section
        yield
        return
    from keybroker.sealing import Sealer  # only configs with a Seal section need the KMS

    try:
        sealer = Sealer.from_uris(*uris, observer=KMSOperations())
    except KMSError as exc:  # our KMS messages name parameters, never their values
        r.p.add("Seal.KMS", str(exc))
        r.unseal = _broken_seal_section
        yield
        return
    r.unseal = sealer.open
    try:
        yield
    finally:
        r.unseal = None
        sealer.close()


def _broken_seal_section(token: str, **_: str) -> str:
    raise ConfigError("sealed value cannot be opened: the Seal section is invalid")
