"""keybroker: hold your own keys.

A credential-re-signing proxy for cloud APIs (a drop-in for volcengine's key-proxy) and a
key-management library (``keybroker.kms``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
