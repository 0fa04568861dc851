"""Vendor signature schemes, one module each, found by key-proxy's vendor code.

``get("aws")`` returns the signer for a vendor code; ``known_vendors()`` lists the codes.
Built-in schemes are registered on first use; a library user may ``register`` more (a
subclass of :class:`SignerBase` implementing the :class:`Signer` protocol).
"""

from __future__ import annotations

import importlib

from keybroker.signers.base import (
    BodyPolicy,
    ErrorAnswer,
    Operation,
    ParsedAuth,
    Resigned,
    Signer,
    SignerBase,
    SigningRequest,
)

__all__ = [
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
]

#: key-proxy's vendor codes mapped to the module that implements each.
BUILTIN_VENDORS: dict[str, str] = {
    code: f"keybroker.signers.{code}"
    for code in (
        "aws",
        "volcengine",
        "ksyun",
        "aliyun",
        "tencent",
        "huawei",
        "baidu",
        "jingdong",
        "akamai",
        "qiniu",
        "ucloud",
        "wangsu",
        "baishan",
    )
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
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a dependency of the module is missing: a real bug
                    raise
                continue  # this vendor's scheme is not part of this build
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
