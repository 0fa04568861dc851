"""The KMS library stands alone: ``import keybroker.kms`` loads nothing of the proxy and
registers no process hook (the proxy's metrics flush at exit and reset after a fork; a
program that only wants DEKs must not inherit that).  Metrics reach a KMS through the
observer it is given (:class:`keybroker.kms.KMSObserver`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keybroker

SRC = Path(keybroker.__file__).resolve().parents[1]

#: packages of the proxy side, none of which the KMS may load
PROXY_SIDE = (
    "keybroker.proxy",
    "keybroker.http",
    "keybroker.metrics",
    "keybroker.server",
    "keybroker.signers",
    "keybroker.config",
    "keybroker.audit",
    "keybroker.keyservice",
    "keybroker.logs",
    "keybroker.replay",
    "keybroker.cli",
)

# Every hook is registered through the module attribute at import time
# (``atexit.register(...)``, ``os.register_at_fork(...)``), so spies installed first see them.
PROBE = r"""
import atexit, json, os, sys

hooks = []
_register, _at_fork = atexit.register, os.register_at_fork

def register(fn, *args, **kwargs):
    hooks.append(["atexit", fn.__module__, fn.__qualname__])
    return _register(fn, *args, **kwargs)

def register_at_fork(**kwargs):
    for when, fn in kwargs.items():
        hooks.append(["fork:" + when, fn.__module__, fn.__qualname__])
    return _at_fork(**kwargs)

atexit.register, os.register_at_fork = register, register_at_fork
for name in sys.argv[1:]:
    __import__(name)
loaded = sorted(m for m in sys.modules if m == "keybroker" or m.startswith("keybroker."))
print(json.dumps({"modules": loaded, "hooks": hooks}))
"""


def _probe(*modules: str) -> tuple[list[str], list[list[str]]]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    doc = json.loads(out.stdout)
    return doc["modules"], doc["hooks"]


def _ours(hooks: list[list[str]]) -> list[list[str]]:
    return [h for h in hooks if h[1] == "keybroker" or h[1].startswith("keybroker.")]


def test_the_kms_loads_nothing_of_the_proxy_and_registers_no_hook() -> None:
    modules, hooks = _probe(
        "keybroker.kms", "keybroker.kms.backends.local", "keybroker.kms.storage.file"
    )
    assert "keybroker.kms.external" in modules  # the KMS itself was loaded
    assert [m for m in modules if ".".join(m.split(".")[:2]) in PROXY_SIDE] == []
    assert _ours(hooks) == []


@pytest.mark.parametrize(
    ("module", "hook"),
    [
        ("keybroker.metrics", ["atexit", "keybroker.metrics.registry", "_flush_at_exit"]),
        (
            "keybroker.metrics",
            ["fork:after_in_child", "keybroker.metrics.registry", "_reset_after_fork"],
        ),
    ],
)
def test_the_probe_sees_the_hooks_the_metrics_register(module: str, hook: list[str]) -> None:
    """The check above is not vacuous: the same probe catches the metrics' own hooks."""
    _, hooks = _probe(module)
    assert hook in _ours(hooks)
