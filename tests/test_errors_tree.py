"""The exception tree drawn in ``keybroker.errors``'s docstring is the real one: every node
sits under its drawn parent, every public exception class of the package is drawn, and every
private one is named in the paragraph that lists them."""

from __future__ import annotations

import builtins
import importlib
import pkgutil
import re

import pytest

import keybroker
import keybroker.errors

_NODE = re.compile(r"^(?P<tree>[ │├└─]*)(?P<name>[A-Za-z_]\w*)")


def drawn_tree() -> dict[str, str | None]:
    """``{name: drawn parent}`` from the docstring's literal block (the root's parent None)."""
    doc = keybroker.errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in block.splitlines():
        m = _NODE.match(line[4:])
        if m is None or (m["tree"] and "─" not in m["tree"]):
            continue  # a description's continuation line (no branch drawn)
        depth = len(m["tree"]) // 4
        assert m["name"] not in parents, f"{m['name']} drawn twice"
        del stack[depth:]
        parents[m["name"]] = stack[-1] if stack else None
        stack.append(m["name"])
    return parents


def keybroker_exceptions() -> dict[str, list[type[BaseException]]]:
    """Every exception class defined in the package, by name."""
    for info in pkgutil.walk_packages(keybroker.__path__, "keybroker."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: dict[str, list[type[BaseException]]] = {}
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] == "keybroker" and cls not in found.get(cls.__name__, []):
            found.setdefault(cls.__name__, []).append(cls)
    return found


@pytest.fixture(scope="module")
def classes() -> dict[str, list[type[BaseException]]]:
    return keybroker_exceptions()


def test_the_tree_is_parsed() -> None:
    tree = drawn_tree()
    assert tree["Exception"] is None
    assert tree["KeybrokerError"] == "Exception"
    assert tree["MissingExtra"] == "KMSError"
    assert tree["NotSent"] == "Stale"
    assert tree["ClientDisconnected"] == "ConnectionResetError"
    assert "is" not in tree and "one" not in tree  # continuation lines are no nodes


def test_every_drawn_node_sits_under_its_drawn_parent(
    classes: dict[str, list[type[BaseException]]],
) -> None:
    for name, parent in drawn_tree().items():
        if parent is None:
            continue
        if hasattr(builtins, name):
            assert issubclass(getattr(builtins, name), getattr(builtins, parent)), name
            continue
        assert len(classes.get(name, [])) == 1, f"{name}: not exactly one class of that name"
        cls = classes[name][0]
        ours = [b for b in cls.__bases__ if b.__module__.split(".")[0] == "keybroker"]
        if ours:
            assert [b.__name__ for b in ours] == [parent], name
        else:
            assert issubclass(cls, getattr(builtins, parent)), name


def test_every_exception_class_is_drawn_or_listed_as_private(
    classes: dict[str, list[type[BaseException]]],
) -> None:
    tree = drawn_tree()
    doc = keybroker.errors.__doc__ or ""
    public = {name for name in classes if not name.startswith("_")}
    private = {name for name in classes if name.startswith("_")}
    assert public - tree.keys() == set()
    assert {name for name in private if f"``{name}``" not in doc} == set()


def test_the_roots_real_subclasses_are_all_drawn() -> None:
    tree = drawn_tree()
    keybroker_exceptions()  # every module imported
    todo = [keybroker.errors.KeybrokerError]
    while todo:
        cls = todo.pop()
        subs = [s for s in cls.__subclasses__() if s.__module__.split(".")[0] == "keybroker"]
        for sub in subs:
            assert tree.get(sub.__name__) == cls.__name__, sub
        todo.extend(subs)
