"""Library hooks: functions a library user has the proxy call on each request.

key-proxy offers request/response hooks to library users; :class:`Hooks` is keybroker's
equivalent, passed to :class:`keybroker.proxy.app.Proxy`.  A hook gets the request's
:class:`~keybroker.context.RequestContext` (never a secret) and may be a plain function or a
coroutine function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from keybroker.context import RequestContext

__all__ = ["HookFn", "Hooks", "run_hooks"]

HookFn = Callable[[RequestContext], Awaitable[None] | None]


@dataclass
class Hooks:
    """Library hooks (key-proxy offers request/response hooks to library users).

    ``before_forward`` runs after verification, before re-signing; raising a ``ProxyError``
    there refuses the request.  ``after_response`` runs once the answer is sent (or failed).
    """

    before_forward: list[HookFn] = field(default_factory=list)
    after_response: list[HookFn] = field(default_factory=list)


async def run_hooks(fns: list[HookFn], ctx: RequestContext) -> None:
    """Call each hook in turn, awaiting those that return an awaitable."""
    for fn in fns:
        result = fn(ctx)
        if result is not None:
            await result
