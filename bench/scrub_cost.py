"""Micro benchmark: microseconds per access line to scrub configured secrets, by count.

    python -m bench.scrub_cost [--n 2000] [--rounds 5]

Every finished log line passes :meth:`keybroker.logs.redact.SecretRegistry.scrub`.  For 4, 100 and
400 registered secrets (random 20-64 character values, as access keys and secrets are), this
times the registry's pattern (a prefix tree of the values) and, as the baseline measured in the
same run, the plain alternation of the values sorted longest first, on a typical access line
that holds none of them (the common case: the whole line is scanned).  Prints microseconds per
line and the ratio baseline / prefix tree.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import time

from keybroker.logs.redact import SecretRegistry

LINE = json.dumps(
    {
        "time": "2026-11-26T01:00:00.123Z",
        "level": "info",
        "msg": "request",
        "id": "0f3c2a9b81d44e6a",
        "account": "prod-aws",
        "vendor": "aws",
        "method": "GET",
        "path": "/bucket/key/with/some/long/path?list-type=2&prefix=foo",
        "status": 200,
        "ms": 1.234,
        "bytes_in": 0,
        "bytes_out": 12345,
        "ua": "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 lang/python#3.11.7",
    }
)
COUNTS = (4, 100, 400)
_CHARS = string.ascii_letters + string.digits + "/+"


def _values(count: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choices(_CHARS, k=rng.choice((20, 40, 64)))) for _ in range(count)]


def _alternation(values: list[str]) -> re.Pattern[str]:
    ordered = sorted(set(values), key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in ordered))


def _per_line(pattern: re.Pattern[str], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            pattern.subn("***", LINE)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    print(f"{'secrets':>8} {'alternation µs':>15} {'prefix tree µs':>15} {'ratio':>6}")
    for count in COUNTS:
        values = _values(count, rng)
        registry = SecretRegistry()
        registry.register(*values)
        tree = registry.pattern
        assert tree is not None
        # Both patterns match the same spellings: the plain and JSON-escaped values are equal
        # for these characters except "/", which JSON leaves alone too.
        base = _alternation(values)
        base_us = _per_line(base, args.n, args.rounds)
        tree_us = _per_line(tree, args.n, args.rounds)
        print(f"{count:>8} {base_us:>15.1f} {tree_us:>15.1f} {base_us / tree_us:>6.1f}")


if __name__ == "__main__":
    main()
