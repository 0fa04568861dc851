"""The hardened YAML reader behind :mod:`keybroker.config.loader`.

PyYAML's safe loader composes the text into nodes (no tag is ever constructed into an object),
with a bound on nesting depth; :class:`Reader` turns nodes into typed values (strings,
booleans, numbers, lists, case-insensitive mappings with merge keys) and records every problem
with its line in a :class:`~keybroker.config.problems.Problems`.  Messages describe a node's
kind, never its value, unless the value is known not to be a secret.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keybroker.config.problems import Problems, clip
from keybroker.errors import ConfigError

__all__ = ["MAX_DEPTH", "SAFE_CONSTRUCTOR", "STD_TAG", "Reader", "compose", "node_line"]

#: Bound on nesting depth (PyYAML's composer recurses per level).
MAX_DEPTH = 32

#: The prefix of YAML's standard tags (``STD_TAG + "seq"`` is a plain list).
STD_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{STD_TAG}{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{STD_TAG}merge"
_TRUE = {"true", "yes", "y", "on"}
_FALSE = {"false", "no", "n", "off"}
_DECIMAL_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_FIELD_NAME = re.compile(r"[A-Za-z_]{1,32}")
#: Builds YAML's own int, float and timestamp scalars; never anything tagged otherwise.
SAFE_CONSTRUCTOR = SafeConstructor()


# --- YAML nodes -> values --------------------------------------------------------------------


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, with a bound on nesting (PyYAML's composer recurses per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event: Any = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeep(event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def node_line(node: Node) -> int:
    """The 1-based line a node starts on (0 if unknown)."""
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 0


_SCALAR_NAMES = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "nothing"}


def _kind(node: Node) -> str:
    """What a node is, never what it holds (it may be a secret in the wrong place)."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _SCALAR_NAMES.get(node.tag.removeprefix(STD_TAG), "a string")


class Reader:
    """Turns nodes into typed values, recording each problem with its line."""

    def __init__(self, problems: Problems) -> None:
        self.p = problems
        # Sealed values are bound to their account and field: while an endpoint is read,
        # ``endpoint`` is its (path, CloudAccountName); ``unseal`` is set by a Seal section
        # (both read by :func:`keybroker.config.secrets.resolvers_for`).
        self.endpoint = ("", "")
        self.unseal: Callable[..., str] | None = None

    def mapping(self, node: Node, path: str, known: tuple[str, ...]) -> dict[str, Node] | None:
        """The ``{canonical key: value node}`` of a mapping; ``None`` if not a mapping."""
        self.p.lines.setdefault(path, node_line(node))
        if self.is_null(node):
            return {}
        if not isinstance(node, MappingNode) or node.tag != f"{STD_TAG}map":
            self.p.add(path, f"expected a mapping, got {self.describe(node)}", node_line(node))
            return None
        by_lower = {k.lower(): k for k in known}
        result: dict[str, Node] = {}
        for key_node, value in self._pairs(node, path, 0):
            name = self._key(key_node, path, by_lower, result)
            if name is not None:
                result[name] = value
                self.p.lines[self.join(path, name)] = node_line(value)
        return result

    def _pairs(self, node: MappingNode, path: str, depth: int) -> list[tuple[Node, Node]]:
        """The key/value pairs with YAML merge keys (``<<: *base``) applied."""
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        merged: list[tuple[Node, Node]] = []
        for key, value in node.value:
            if key.tag != _MERGE_TAG:
                continue
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for src in sources:
                if not isinstance(src, MappingNode) or depth >= MAX_DEPTH:
                    self.p.add(path, "'<<' must merge mappings", node_line(key))
                    continue
                merged.extend(self._pairs(src, path, depth + 1))
        seen = {str(k.value).lower() for k, _ in explicit if isinstance(k, ScalarNode)}
        inherited = [(k, v) for k, v in merged if str(k.value).lower() not in seen]
        return explicit + self._first_of_each(inherited)

    @staticmethod
    def _first_of_each(pairs: list[tuple[Node, Node]]) -> list[tuple[Node, Node]]:
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in pairs:
            out.setdefault(str(k.value).lower(), (k, v))
        return list(out.values())

    def _key(
        self, key: Node, path: str, by_lower: dict[str, str], seen: dict[str, Node]
    ) -> str | None:
        if not isinstance(key, ScalarNode) or key.tag not in _SCALAR_TAGS:
            self.p.add(path, "keys must be plain names", node_line(key))
            return None
        name = by_lower.get(str(key.value).lower())
        if name is None:
            self._unknown(key, path, by_lower)
            return None
        if name in seen:
            first = self.p.lines.get(self.join(path, name))
            self.p.add(
                self.join(path, name), f"duplicate key (first at line {first})", node_line(key)
            )
            return None
        return name

    def _unknown(self, key: ScalarNode, path: str, by_lower: dict[str, str]) -> None:
        text = str(key.value)
        close = difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"did you mean {by_lower[close[0]]}?" if close else None
        known = f"known: {', '.join(by_lower.values())}"
        if "Credentials" in path and not _FIELD_NAME.fullmatch(text):
            # A mis-indented secret can land here as a key: do not echo it.
            self.p.add(path, f"unknown field (name not shown; {hint or known})", node_line(key))
        else:
            self.p.add(
                self.join(path, clip(text)), f"unknown field ({hint or known})", node_line(key)
            )

    @staticmethod
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == f"{STD_TAG}null"

    def describe(self, node: Node) -> str:
        if node.tag not in _SCALAR_TAGS | {f"{STD_TAG}map", f"{STD_TAG}seq"}:
            return f"a value tagged {clip(node.tag.replace(STD_TAG, '!!', 1))}"
        return _kind(node)

    def scalar(self, node: Node, path: str, expected: str) -> str | None:
        """The raw text of a scalar (``None`` for null or a problem).

        A problem here is always a wrong node kind or tag, so the message never quotes the
        value: safe for credential fields too."""
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            return None if self.is_null(node) else str(node.value)
        self.p.add(path, f"expected {expected}, got {self.describe(node)}", node_line(node))
        return None

    def string(self, node: Node, path: str) -> str | None:
        # Like yaml.v2, any scalar reads as its source text (so 0123 stays "0123").
        return self.scalar(node, path, "a string")

    def boolean(self, node: Node, path: str) -> bool | None:
        text = self.scalar(node, path, "a boolean")
        if text is None:
            return None
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        self.p.add(path, f"expected a boolean, got '{clip(text)}'", node_line(node))
        return None

    def integer(self, node: Node, path: str) -> int | None:
        text = self.scalar(node, path, "an integer")
        if text is None:
            return None
        if isinstance(node, ScalarNode) and node.tag == f"{STD_TAG}int":
            return SAFE_CONSTRUCTOR.construct_yaml_int(node)
        if node.tag == f"{STD_TAG}str" and _DECIMAL_INT.fullmatch(text):
            return int(text)
        self.p.add(path, f"expected an integer, got '{clip(text)}'", node_line(node))
        return None

    def number(self, node: Node, path: str) -> float | None:
        text = self.scalar(node, path, "a number")
        if text is None:
            return None
        value: float | None = None
        if isinstance(node, ScalarNode) and node.tag == f"{STD_TAG}int":
            value = float(SAFE_CONSTRUCTOR.construct_yaml_int(node))
        elif isinstance(node, ScalarNode) and node.tag == f"{STD_TAG}float":
            value = SAFE_CONSTRUCTOR.construct_yaml_float(node)
        elif _DECIMAL.fullmatch(text):
            value = float(text)
        if value is None or not math.isfinite(value):
            self.p.add(path, f"expected a number, got '{clip(text)}'", node_line(node))
            return None
        return value

    def string_list(self, node: Node, path: str) -> list[str] | None:
        """A list of strings; a single string is read as a one-element list."""
        if isinstance(node, ScalarNode):
            text = self.string(node, path)
            return None if text is None else [text]
        if not isinstance(node, SequenceNode) or node.tag != f"{STD_TAG}seq":
            self.p.add(
                path, f"expected a list of strings, got {self.describe(node)}", node_line(node)
            )
            return None
        out = []
        for i, item in enumerate(node.value):
            text = self.string(item, f"{path}[{i}]")
            if text is not None:
                out.append(text)
        return out

    def required(self, m: dict[str, Node] | None, path: str, key: str) -> Node | None:
        """The node for a required ``key`` of mapping ``m`` (``None`` if ``m`` was broken)."""
        if m is None:
            return None
        if key not in m:
            self.p.add(self.join(path, key), "required field is missing")
            return None
        return m[key]


def compose(text: str, source: str) -> Node | None:
    """The YAML node tree.  Raises ``ConfigError`` for invalid or too deeply nested YAML."""
    try:
        return yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        raise ConfigError(f"{source}:{exc.line}: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        # Our own message: str(exc) quotes source lines, which may hold secrets.
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise ConfigError(f"{source}:{line}: invalid YAML: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, int(exc.position)) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        raise ConfigError(f"{source}:{line}: character U+{code:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({type(exc).__name__})") from None
