"""Print keybroker's import graph facts: modules, packages, circles, private names
imported across a package boundary, and lazy (function-level or TYPE_CHECKING) imports.

    python scripts/import_graph.py [--json]

Used for the architecture guide and by tests/test_architecture.py.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: list[tuple[str, str, str]] = field(default_factory=list)
    lazy: list[tuple[str, str]] = field(default_factory=list)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(name: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to (a package's __init__ belongs to itself)."""
    if modules[name].name == "__init__.py":
        return name
    return name.rpartition(".")[0]


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    if not is_pkg:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for inner in ast.walk(sub):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def build(root: Path = ROOT) -> Graph:
    graph = Graph()
    for path in sorted((root / "keybroker").rglob("*.py")):
        graph.modules[module_name(path, root)] = path
    for name, path in graph.modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        tc_lines = _type_checking_lines(tree)
        top_level = {id(n) for n in tree.body}
        targets: set[str] = set()
        for node in ast.walk(tree):
            found: list[tuple[str, list[str]]] = []
            if isinstance(node, ast.Import):
                found = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = _resolve(name, path.name == "__init__.py", node)
                found = [(mod, [a.name for a in node.names])]
            for mod, names in found:
                if not mod.startswith("keybroker"):
                    continue
                for imported in names or [""]:
                    target = f"{mod}.{imported}" if imported else mod
                    if target not in graph.modules:
                        target = mod
                        while target and target not in graph.modules:
                            target = target.rpartition(".")[0]
                    if not target or target == name:
                        continue
                    targets.add(target)
                    private = _private(imported) or any(
                        _private(part) for part in target.split(".")
                    )
                    if private and package_of(target, graph.modules) != package_of(
                        name, graph.modules
                    ):
                        graph.private.append((name, target, imported))
                    if (
                        id(node) not in top_level and not _inside_toplevel_try(tree, node)
                    ) or node.lineno in tc_lines:
                        graph.lazy.append((name, target))
        graph.edges[name] = targets
    return graph


def _inside_toplevel_try(tree: ast.Module, node: ast.AST) -> bool:
    for top in tree.body:
        if isinstance(top, ast.Try | ast.If) and node in list(ast.walk(top)):
            return not (
                "TYPE_CHECKING" in ast.unparse(top.test) if isinstance(top, ast.If) else False
            )
    return False


def circles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph.modules:
        if v not in index:
            visit(v)
    return sorted(out)


def package_circles(graph: Graph) -> list[list[str]]:
    """Circles between packages (a module's package imports another's and back)."""
    pkg_graph = Graph()
    for name in graph.modules:
        pkg_graph.modules.setdefault(package_of(name, graph.modules), graph.modules[name])
    for name, targets in graph.edges.items():
        src = package_of(name, graph.modules)
        for t in targets:
            dst = package_of(t, graph.modules)
            if dst != src and not src.startswith(dst + ".") and not dst.startswith(src + "."):
                pkg_graph.edges.setdefault(src, set()).add(dst)
    return circles(pkg_graph)


def summary(graph: Graph) -> dict[str, object]:
    packages = sorted({package_of(n, graph.modules) for n in graph.modules})
    top = [n for n in graph.modules if n.count(".") == 1 and graph.modules[n].name != "__init__.py"]
    return {
        "modules": len(graph.modules),
        "packages": len(packages),
        "top_level_modules": len(top),
        "edges": sum(len(t) for t in graph.edges.values()),
        "module_circles": circles(graph),
        "package_circles": package_circles(graph),
        "private_cross_package": sorted(set(graph.private)),
        "lazy_imports": sorted(set(graph.lazy)),
    }


def main() -> None:
    facts = summary(build())
    if "--json" in sys.argv:
        print(json.dumps(facts, indent=1))
        return
    for key in ("modules", "packages", "top_level_modules", "edges"):
        print(f"{key}: {facts[key]}")
    for key in ("module_circles", "package_circles", "private_cross_package", "lazy_imports"):
        items = facts[key]
        assert isinstance(items, list)
        print(f"{key}: {len(items)}")
        for item in items:
            print("   ", item)


if __name__ == "__main__":
    main()
