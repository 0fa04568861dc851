"""A worker loads what its signers read on every request before it listens, so its first
request does not pay for it (the AWS signer's botocore model file takes ~0.2 s to parse; on
a busy machine a cold worker's first requests stalled for over a second)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from keybroker.credentials import Credential
    from keybroker.proxy.app import Proxy
    from keybroker.secret import Secret
    from keybroker.settings import Config, Endpoint
    from keybroker.signers import _aws_models

    vendor = sys.argv[1]
    config = Config(endpoints=[Endpoint(
        cloud_account_name="a", vendor=vendor,
        proxy=Credential("KBPROXYKEY0001", Secret("proxy-secret-d8f7a6s5d4f3g2h1")),
        real=Credential("KBREALKEY00001", Secret("real-secret-q9w8e7r6t5y4u3i2")),
    )])
    config.security.replay_cache = "off"
    config.audit.enabled = False

    async def main():
        proxy = Proxy(config)
        before = _aws_models._raw.cache_info().currsize
        await proxy.start("127.0.0.1", 0)
        after = _aws_models._raw.cache_info().currsize
        await proxy.stop()
        print(before, after)

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("vendor", "loaded"), [("aws", "1"), ("tencent", "0")])
def test_start_loads_the_models_of_configured_vendors_only(vendor: str, loaded: str) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, vendor], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", loaded]
