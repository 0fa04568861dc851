"""Running a server process: listening sockets and TLS, signals, reloads
(:mod:`~keybroker.server.listen`), and the supervisor that shares one socket among worker
processes and hands them their config over a pipe (:mod:`~keybroker.server.supervisor`,
:mod:`~keybroker.server.workerchannel`).  It serves anything
:class:`~keybroker.server.listen.Servable`; it never imports the proxy.

May import: ``http``, ``replay``, ``logs``, ``metrics`` and the foundation modules.
"""

from keybroker.server.listen import Servable, StartupFailed, run_until_signalled
from keybroker.server.supervisor import Supervisor

__all__ = ["Servable", "StartupFailed", "Supervisor", "run_until_signalled"]
