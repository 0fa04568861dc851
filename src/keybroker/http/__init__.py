"""HTTP/1.1 on both sides of the proxy, and nothing vendor- or proxy-specific.

- :mod:`~keybroker.http.messages` — requests, responses and bodies as values; framing rules.
- :mod:`~keybroker.http.server` — the server (httptools), one task per connection.
- :mod:`~keybroker.http.connlimits` — connection caps enforced at accept.
- :mod:`~keybroker.http.upstream` — one upstream connection and its pool.
- :mod:`~keybroker.http.transport` — the seam the proxy forwards through (``Transport``).
- :mod:`~keybroker.http.client` — the transport keybroker runs: pooled upstream connections.
- :mod:`~keybroker.http.netguard` — the resolver that refuses private and metadata addresses.

May import: the foundation modules (``errors``, ``secret``) only.
"""

from keybroker.http.client import UpstreamClient
from keybroker.http.messages import Request, Response, StreamResponse
from keybroker.http.netguard import DestinationRefused, GuardedResolver
from keybroker.http.server import HttpServer
from keybroker.http.transport import Answer, Transport
from keybroker.http.upstream import UpstreamFailure, UpstreamResponse

__all__ = [
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
]
