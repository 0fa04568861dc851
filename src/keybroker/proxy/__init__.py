"""The credential proxy: find the account, verify, check, re-sign, forward, stream back.

:class:`~keybroker.proxy.app.Proxy` owns the life cycle; a request goes
``app`` → ``routing`` (account and signer) → ``checks`` (admission, policy, replay, limits)
→ ``forwarding`` (re-sign, stream upstream) → ``answers`` (the answer or the error shape);
``passthrough``, ``spool``, ``bodyprobe``, ``pathscope``, ``hostscope`` and ``destinations``
serve those steps, ``recording`` writes the access log and the audit outcome, ``hooks`` are the
library user's callbacks.  See ARCHITECTURE.md for the whole path.

May import: everything below it — ``http``, ``signers``, ``audit``, ``replay``, ``config``,
``keyservice``, ``logs``, ``metrics``, ``server`` and the foundation modules.
"""

from keybroker.proxy.app import Proxy
from keybroker.proxy.hooks import Hooks

__all__ = ["Hooks", "Proxy"]
