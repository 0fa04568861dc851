"""Read key-proxy's ``config.yml`` into a :class:`~keybroker.settings.Config`, and validate it.

``load(path)`` / ``loads(text)`` accept key-proxy's file verbatim: PascalCase keys (matched
case-insensitively, as a forgiving superset of key-proxy's exact ``yaml.v2`` tags), plus our
additions.  ``validate(cfg)`` runs the same checks on a ``Config`` built in Python.

Every problem is collected first, then one :class:`~keybroker.errors.ConfigError` is raised
whose ``problems`` read like ``config.yml:12: Endpoints[2].Vendor: unknown vendor 'awz' (known:
aws, volcengine)``.  Messages name fields, never the value of a credential.

Credential fields may hold references instead of values:

* ``${NAME}`` — the environment variable ``NAME``;
* ``${file:/path}`` — the content of a file, one trailing newline removed;
* ``${prefix:rest}`` — any resolver added with :func:`register_secret_resolver`
  (``sealed`` is reserved for values sealed with keybroker's KMS);
* ``${sealed:kb1....}`` — a value made by ``keybroker seal``, opened with the KMS named in the
  top-level ``Seal`` section (``KMS: kms://...``, ``Storage: storage://...``), bound to its
  endpoint's ``CloudAccountName`` and field (see :mod:`keybroker.sealing`);
* ``$${...}`` — the literal text ``${...}`` (each extra leading ``$`` escapes one more).

The YAML is composed into nodes with PyYAML's safe loader (no tags are ever constructed into
objects), so each problem keeps its line; size, nesting depth and endpoint count are bounded.
The reader is :mod:`keybroker.config.yamlform`, the nodes become dataclasses in
:mod:`keybroker.config.build`, and :mod:`keybroker.config.check` holds the rules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from yaml.nodes import MappingNode

from keybroker.config.build import _TOP_KEYS, _build, _normalise
from keybroker.config.check import KEY_PROXY_VENDORS, LOG_LEVELS, check_config, validate
from keybroker.config.problems import Problems
from keybroker.config.secrets import SecretResolver, register_secret_resolver
from keybroker.config.secrets import _resolvers as _resolvers
from keybroker.config.yamlform import _compose, _line
from keybroker.config.yamlform import _Reader as _Reader
from keybroker.errors import ConfigError
from keybroker.settings import Config

# ``_resolvers`` and ``_Reader`` stay reachable here (``as`` marks them re-exported): tests
# restore the resolver registry through this module, and config_secrets types the reader.
__all__ = [
    "KEY_PROXY_VENDORS",
    "LOG_LEVELS",
    "MAX_CONFIG_BYTES",
    "SecretResolver",
    "load",
    "loads",
    "register_secret_resolver",
    "validate",
]

#: Bound on hostile or accidental input.
MAX_CONFIG_BYTES = 1024 * 1024


def loads(text: str, source: str = "<string>", *, env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate a config from YAML text; ``source`` names it in messages.

    ``env`` replaces ``os.environ`` for ``${NAME}`` references.
    Raises ``ConfigError`` listing every problem; ``TypeError`` if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError("loads() needs the YAML as a str")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    root = _compose(text, source)
    if root is None:
        raise ConfigError(f"{source}: the file is empty (expected Http, Log, Endpoints, ...)")
    problems = Problems(source=source)
    reader = _Reader(problems)
    if not isinstance(root, MappingNode):
        got = reader.describe(root)
        raise ConfigError(f"{source}:{_line(root)}: expected a mapping of sections, got {got}")
    top = reader.mapping(root, "", _TOP_KEYS) or {}
    cfg = _build(reader, top, os.environ if env is None else env)
    _normalise(cfg)
    check_config(cfg, problems)
    problems.raise_if_any()
    return cfg


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at ``path`` (key-proxy's ``-conf-file``).

    Raises ``ConfigError`` (unreadable, not UTF-8, too large, or any problem ``loads`` finds).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text") from None
    return loads(text.removeprefix("\ufeff"), source, env=env)
