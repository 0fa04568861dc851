"""Every error code keybroker answers with is in the README's table, with its status: the
table is what platform developers and operators read when a request is refused."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import keybroker
from keybroker.errors import ProxyError

README = Path(__file__).resolve().parents[1] / "README.md"
_ROW = re.compile(r"^\| `(Proxy\.[A-Za-z]+)` \| (\d{3}) \|", re.M)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _codes() -> dict[str, int]:
    # import every module, so every ProxyError subclass is defined
    for info in pkgutil.walk_packages(keybroker.__path__, "keybroker."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra (a cloud SDK) that is not installed
            continue
    codes: dict[str, int] = {}
    for cls in _all_subclasses(ProxyError):
        code, status = getattr(cls, "code", None), getattr(cls, "status", None)
        if isinstance(code, str) and code.startswith("Proxy.") and isinstance(status, int):
            codes[code] = status
    return codes


def test_every_error_code_is_in_the_readme_table() -> None:
    table = {code: int(status) for code, status in _ROW.findall(README.read_text())}
    codes = _codes()
    assert len(codes) >= 15
    missing = sorted(set(codes) - set(table))
    assert not missing, f"error codes missing from the README table: {missing}"
    wrong = {c: (codes[c], table[c]) for c in codes if codes[c] != table[c]}
    assert not wrong, f"README status differs (code: (real, README)): {wrong}"
