"""Many PKCS#11 wrappers on two SoftHSM2 tokens, opening, wrapping, unwrapping and closing
at once; run by ``test_pkcs11.py`` in its own process, so that a crash of the module (SoftHSM2
takes no locks of its own) fails that test instead of the whole run.

Usage: ``python -m tests.kms.pkcs11_stress MODULE TOKEN,TOKEN KEY_LABEL ROUNDS`` with the PIN
in ``KB_PIN`` and ``SOFTHSM2_CONF`` set; prints the number of keys checked.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.parse

from keybroker.kms.backends.pkcs11 import PKCS11Wrapper
from keybroker.kms.uri import parse_uri

USERS = 8
KEYS_PER_ROUND = 8


async def _user(uri: str, rounds: int) -> int:
    checked = 0
    for _ in range(rounds):
        w = PKCS11Wrapper.from_uri(parse_uri(uri))
        try:
            keys = [os.urandom(32) for _ in range(KEYS_PER_ROUND)]
            wrapped = await asyncio.gather(*(w.wrap(k, b"stress") for k in keys))
            if await asyncio.gather(*(w.unwrap(x, b"stress") for x in wrapped)) != keys:
                raise SystemExit("a key came back different")
            checked += len(keys)
        finally:
            await w.close()
    return checked


async def _main(module: str, tokens: list[str], key_label: str, rounds: int) -> int:
    uris = [
        "kms://pkcs11?"
        + urllib.parse.urlencode(
            {
                "module": module,
                "tokenLabel": token,
                "pin": "env:KB_PIN",
                "keyLabel": key_label,
                "create": "true",
            }
        )
        for token in tokens
    ]
    done = await asyncio.gather(*(_user(uris[i % len(uris)], rounds) for i in range(USERS)))
    return sum(done)


if __name__ == "__main__":
    module, tokens, key_label, rounds = sys.argv[1:5]
    print(asyncio.run(_main(module, tokens.split(","), key_label, int(rounds))))
