"""ARCHITECTURE.md is the rule: its layer table says which package may import which, its
request path names real code, and every package's public names are pinned here.

The import graph comes from ``scripts/import_graph.py`` (static: every ``import``, including
function-level and TYPE_CHECKING ones, counts).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")


def _graph_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


GRAPH_TOOL = _graph_module()
GRAPH = GRAPH_TOOL.build()


def _section(name: str) -> list[list[str]]:
    """The rows of the table between ``<!-- name: start -->`` and ``<!-- name: end -->``."""
    match = re.search(rf"<!-- {name}: start -->\n(.*?)<!-- {name}: end -->", GUIDE, re.S)
    assert match, f"ARCHITECTURE.md has no {name} table"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _layers() -> dict[str, set[str] | None]:
    allowed: dict[str, set[str] | None] = {}
    for package, _job, may in _section("layers"):
        name = package.strip("`")
        allowed[name] = None if may == "everything" else set(re.findall(r"`([\w.]+)`", may))
    return allowed


LAYERS = _layers()


def group_of(module: str) -> str:
    """The row of the layer table a module belongs to."""
    parts = module.split(".")
    if module == "keybroker.__main__":
        return "cli"
    if len(parts) == 1:
        return "foundation"
    if len(parts) == 2 and GRAPH.modules[module].name != "__init__.py":
        return parts[1] if parts[1] in LAYERS else "foundation"
    return parts[1]


def test_every_module_belongs_to_a_row_of_the_layer_table() -> None:
    unknown = sorted({group_of(m) for m in GRAPH.modules} - set(LAYERS))
    assert not unknown, f"packages missing from ARCHITECTURE.md's layer table: {unknown}"


def test_imports_follow_the_layer_table() -> None:
    wrong = []
    for module, targets in GRAPH.edges.items():
        source = group_of(module)
        allowed = LAYERS[source]
        if allowed is None:
            continue
        for target in targets:
            dest = group_of(target)
            if dest != source and dest not in allowed:
                wrong.append(f"{module} -> {target} ({source} may not import {dest})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_table_has_no_circle() -> None:
    order: list[str] = []
    pending = {k: set(v) - {k} for k, v in LAYERS.items() if v is not None}
    while pending:
        ready = sorted(k for k, deps in pending.items() if deps <= set(order))
        assert ready, f"the layer table has a circle among {sorted(pending)}"
        order.extend(ready)
        for k in ready:
            del pending[k]


def test_no_module_circles() -> None:
    assert GRAPH_TOOL.circles(GRAPH) == []


def test_no_private_name_crosses_a_package() -> None:
    assert sorted(set(GRAPH.private)) == []


def test_the_graph_tool_sees_what_the_rules_forbid(tmp_path: Path) -> None:
    """The checks above can fail: a planted circle and a private import are found."""
    pkg = tmp_path / "keybroker"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "one.py").write_text("def f():\n    from keybroker.two import _g\n")
    (pkg / "two.py").write_text("from keybroker.a.one import f\n")
    graph = GRAPH_TOOL.build(tmp_path)
    assert GRAPH_TOOL.circles(graph) == [["keybroker.a.one", "keybroker.two"]]
    assert ("keybroker.a.one", "keybroker.two", "_g") in graph.private
    assert ("keybroker.a.one", "keybroker.two") in graph.lazy


@pytest.mark.parametrize("row", _section("request-path"), ids=lambda row: row[0])
def test_each_hop_of_the_request_path_names_real_code(row: list[str]) -> None:
    target = row[2].strip("`")
    module_name, _, qualname = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    assert callable(obj), target


def test_the_request_path_is_in_the_order_the_proxy_runs_it() -> None:
    """The hops inside ``proxy.app`` appear in the guide in the order the code calls them."""
    source = (ROOT / "src/keybroker/proxy/app.py").read_text(encoding="utf-8")
    start = source.index("async def _proxy(")
    calls = [
        "admit(",
        "router.native(",
        "spool_body(",
        "verify_signature(",
        "request_operation(",
        "policy.check(",
        "check_replay(",
        "signer.resign(",
        ".forward(",
    ]
    for call in calls:
        found = source.find(call, start)
        assert found > 0, f"proxy.app no longer calls {call} after the previous hop"
        start = found
    guide = [row[2] for row in _section("request-path")]
    names = [
        "checks:admit",
        "routing:Router",
        "spool:spool_body",
        "checks:verify_signature",
        "checks:request_operation",
        "policy:check",
        "checks:check_replay",
        "Signer.resign",
        "Forwarder.forward",
    ]
    indexes = [next(i for i, hop in enumerate(guide) if name in hop) for name in names]
    assert indexes == sorted(indexes)


#: Each package's public names: a change here is a change of the library's surface.
PUBLIC = {
    "keybroker.http": [
        "Answer",
        "DestinationRefused",
        "GuardedResolver",
        "HttpServer",
        "Request",
        "Response",
        "StreamResponse",
        "Transport",
        "UpstreamClient",
        "UpstreamFailure",
        "UpstreamResponse",
    ],
    "keybroker.proxy": ["Hooks", "Proxy"],
    "keybroker.config": ["load", "loads", "register_secret_resolver", "validate"],
    "keybroker.audit": ["AuditLog", "VerifyResult", "verify", "verify_keyed"],
    "keybroker.logs": ["SECRETS", "log_event", "redact_text", "setup_logging"],
    "keybroker.metrics": ["DEFAULT", "ProxyMetrics"],
    "keybroker.replay": ["ReplayCache", "ReplayCacheUnavailable", "replay_cache_from_config"],
    "keybroker.cli": ["main"],
    "keybroker.server": ["Servable", "StartupFailed", "Supervisor", "run_until_signalled"],
    "keybroker.signers.sigv4": ["SigV4Scheme"],
    "keybroker.signers": [
        "BUILTIN_VENDORS",
        "BodyPolicy",
        "ErrorAnswer",
        "Operation",
        "ParsedAuth",
        "Resigned",
        "Signer",
        "SignerBase",
        "SigningRequest",
        "all_signers",
        "get",
        "known_vendors",
        "register",
    ],
    "keybroker.keyservice": [
        "ID_PREFIX",
        "InvalidArgument",
        "KeyDeleted",
        "KeyEvent",
        "KeyNotFound",
        "KeyService",
        "KeyStore",
        "MethodNotAllowed",
        "NotSupported",
        "TOMBSTONE_PREFIX",
        "UnknownOperation",
        "attach",
        "build_store",
    ],
    "keybroker.kms.storage": [
        "MAX_BLOB_BYTES",
        "MAX_KEY_ID_BYTES",
        "Storage",
        "validate_blob",
        "validate_key_id",
        "validate_prefix",
    ],
    # keybroker.kms: tests/kms/test_public_api.py
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_every_package_states_its_job() -> None:
    for path in sorted((ROOT / "src/keybroker").rglob("__init__.py")):
        module = GRAPH_TOOL.module_name(path)
        doc = importlib.import_module(module).__doc__
        assert doc and len(doc.split()) >= 8, f"{module} has no docstring stating its job"
