"""Which operation names only read: the rule every signer's ``Operation.read_only`` uses.

An operation is read-only when its name starts with a reading verb of the vendors' API naming
conventions (``Describe``, ``Get``, ``List``, ``Head``, ..., as a whole word of the
CamelCase name) and does not hand out a credential,
a token, a password or a session: ``GetSessionToken``, ``GetFederationToken``,
``GetPasswordData``, ``GetAuthorizationToken``, S3's ``CreateSession``, S3 Access Grants'
``GetDataAccess``, a console's ``DescribeInstanceVncUrl`` (or Alibaba's
``DescribeInstanceVncPasswd``), a Kubernetes cluster's kubeconfig (Tencent's
``DescribeClusterKubeconfig``, Alibaba's ``DescribeClusterUserKubeconfig``) or a stored secret
(``GetSecretValue``) give whoever holds them access outside the proxy, so they are never
read-only.  Verbs that read in one API and
write in another (``Check``: License Manager's ``CheckoutLicense``) are not read verbs.
"""

from __future__ import annotations

__all__ = ["METHOD_OVERRIDES", "READ_PREFIXES", "is_read_action", "reads_only"]

#: name prefixes (lower case) of operations that only read
READ_PREFIXES = (
    "describe",
    "get",
    "list",
    "head",
    "batchget",
    "batchdescribe",
    "query",
    "scan",
    "search",
    "lookup",
    "select",
)

#: name parts (lower case) of operations that issue a credential, even when named like a read
_ISSUES_ACCESS = ("token", "credential", "password", "passwd", "session", "signin", "presign",
                  "embedurl", "vncurl", "kubeconfig", "secretvalue")  # fmt: skip
#: whole names (lower case) of operations named like reads that hand out access or create
#: something: S3 Access Grants' GetDataAccess and GameLift's GetComputeAccess return temporary
#: AWS credentials, GameLift's GetInstanceAccess and Lightsail's GetInstanceAccessDetails log-in
#: secrets, Mainframe Modernization's GetSignedBluinsightsUrl a signed log-in URL; Cognito's
#: GetId creates an identity
_NOT_READS = frozenset(
    {"getdataaccess", "getcomputeaccess", "getinstanceaccess", "getinstanceaccessdetails",
     "getsignedbluinsightsurl", "getid"}
)  # fmt: skip


def is_read_action(name: str | None) -> bool:
    """True when the operation ``name`` certainly only reads."""
    if not name:
        return False
    low = name.lower()
    if low in _NOT_READS or any(part in low for part in _ISSUES_ACCESS):
        return False
    # the verb is a whole word: "GetObject", "Query", not "Listen" or "Getaway"
    return any(
        low.startswith(p) and (len(name) == len(p) or not name[len(p)].islower())
        for p in READ_PREFIXES
    )


_READ_METHODS = frozenset({"GET", "HEAD"})
#: the methods a read may be sent with (POST: RPC APIs send reads as POST)
_RPC_READ_METHODS = frozenset({"GET", "HEAD", "POST"})
#: headers some REST gateways read as the method to execute instead of the request line's
METHOD_OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


def reads_only(action: str | None, method: str) -> bool:
    """The generic read-only rule, for signers without their own ``operation``: an RPC action
    named like a read (:func:`is_read_action`) sent with GET, HEAD or POST; a REST request
    without an action only with GET or HEAD."""
    if action:
        return is_read_action(action) and method.upper() in _RPC_READ_METHODS
    return method.upper() in _READ_METHODS
