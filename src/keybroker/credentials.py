"""Credentials as the config holds them: an access key id plus secret parts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keybroker.secret import Secret

__all__ = ["Credential"]


@dataclass(frozen=True, slots=True)
class Credential:
    """One vendor credential (key-proxy's ``AccessKey``/``SecretKey``/... fields).

    ``access_token`` is a session/security token (AWS ``X-Amz-Security-Token``, Volcengine
    ``X-Security-Token``, Tencent ``X-TC-Token``); ``client_token``/``client_secret`` are used by
    Akamai EdgeGrid.  The access key id is not secret; every other field is.
    """

    access_key: str
    secret_key: Secret
    access_token: Secret | None = None
    client_token: Secret | None = None
    client_secret: Secret | None = None
    #: a proxy credential stops working at this time (``ExpiresAt``, ours); ``None``: never
    expires_at: datetime | None = None

    def secrets(self) -> list[str]:
        """Every secret value of this credential (for log scanning in tests)."""
        parts = [self.secret_key, self.access_token, self.client_token, self.client_secret]
        return [p.reveal() for p in parts if p]
