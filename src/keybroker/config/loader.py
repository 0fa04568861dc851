"""Read key-proxy's ``config.yml`` into a :class:`~keybroker.settings.Config`, and validate it.

``load(path)`` / ``loads(text)`` accept key-proxy's file verbatim: PascalCase keys (matched
case-insensitively, as a forgiving superset of key-proxy's exact ``yaml.v2`` tags), plus our
additions.  :func:`keybroker.config.check.validate` runs the same checks on a ``Config`` built
in Python.

Every problem is collected first, then one :class:`~keybroker.errors.ConfigError` is raised
whose ``problems`` read like ``config.yml:12: Endpoints[2].Vendor: unknown vendor 'awz' (known:
aws, volcengine)``.  Messages name fields, never the value of a credential.

Credential fields may hold references instead of values:

* ``${NAME}`` — the environment variable ``NAME``;
* ``${file:/path}`` — the content of a file, one trailing newline removed;
* ``${prefix:rest}`` — any resolver added with
  :func:`~keybroker.config.secrets.register_secret_resolver`
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

from keybroker.config.build import build_config
from keybroker.config.check import check_config
from keybroker.config.problems import Problems
from keybroker.config.yamlform import Reader, compose, node_line
from keybroker.errors import ConfigError
from keybroker.settings import Config

__all__ = ["MAX_CONFIG_BYTES", "load", "loads"]

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
    root = compose(text, source)
    if root is None:
        raise ConfigError(f"{source}: the file is empty (expected Http, Log, Endpoints, ...)")
    problems = Problems(source=source)
    reader = Reader(problems)
    if not isinstance(root, MappingNode):
        got = reader.describe(root)
        raise ConfigError(f"{source}:{node_line(root)}: expected a mapping of sections, got {got}")
    cfg = build_config(reader, root, os.environ if env is None else env)
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
