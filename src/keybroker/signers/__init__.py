"""Vendor signature schemes, one module each, found by key-proxy's vendor code.

``get("aws")`` returns the signer for a vendor code; ``known_vendors()`` lists the codes.
Built-in schemes are registered on first use; a library user may ``register`` more.
"""

from __future__ import annotations

import importlib

from keybroker.signers.base import BodyPolicy, ParsedAuth, Signer, SigningRequest

__all__ = [
    "BUILTIN_VENDORS",
    "BodyPolicy",
    "ParsedAuth",
    "Signer",
    "SigningRequest",
    "get",
    "known_vendors",
    "register",
]

#: key-proxy's vendor codes mapped to the module that implements each.
BUILTIN_VENDORS: dict[str, str] = {
    "aws": "keybroker.signers.aws",
    "volcengine": "keybroker.signers.volcengine",
}

_registry: dict[str, Signer] = {}
_loaded = False


def register(signer: Signer) -> None:
    """Register (or replace) the signer for ``signer.vendor``."""
    if not isinstance(signer, Signer):
        raise TypeError("register() needs an object implementing keybroker.signers.Signer")
    _registry[signer.vendor] = signer


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for vendor, module in BUILTIN_VENDORS.items():
        if vendor not in _registry:
            mod = importlib.import_module(module)
            register(mod.SIGNER)
    _loaded = True


def known_vendors() -> list[str]:
    """The registered vendor codes, in registration order."""
    _load_builtins()
    return list(_registry)


def get(vendor: str) -> Signer:
    """The signer for ``vendor``.  Raises ``KeyError`` naming the known codes."""
    _load_builtins()
    try:
        return _registry[vendor]
    except KeyError:
        known = ", ".join(_registry)
        raise KeyError(f"unknown vendor {vendor!r} (known: {known})") from None


def all_signers() -> list[Signer]:
    _load_builtins()
    return list(_registry.values())
