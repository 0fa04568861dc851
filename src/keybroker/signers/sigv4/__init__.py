"""AWS Signature Version 4 and its relatives (Kingsoft Cloud signs the same way):
:mod:`~keybroker.signers.sigv4.parse` (the ``Authorization`` header and dates),
:mod:`~keybroker.signers.sigv4.canonical` (canonical request), :mod:`~keybroker.signers.sigv4.keys`
(derived signing keys, cached), :mod:`~keybroker.signers.sigv4.presign` (query-string form),
:mod:`~keybroker.signers.sigv4.chunked` (``aws-chunked`` bodies, framing and trailers), and
:class:`~keybroker.signers.sigv4.scheme.SigV4Scheme`, which a vendor module configures.

May import: ``signers.base`` and the foundation modules.
"""

from keybroker.signers.sigv4.scheme import SigV4Scheme

__all__ = ["SigV4Scheme"]
