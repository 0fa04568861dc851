"""``Audit.Sync``: when :meth:`AuditLog.commit` returns, the line is as durable as asked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from keybroker.audit.sync import parse_sync
from keybroker.audit.trail import AuditLog
from keybroker.audit.verify import verify


def _event(i: int) -> dict[str, object]:
    return {"request_id": f"r{i}", "decision": "allow"}


@pytest.mark.parametrize("sync", [None, 0.0, 0.02])
def test_concurrent_commits_are_all_written_in_one_chain(
    tmp_path: Path, sync: float | None
) -> None:
    async def run() -> float:
        with AuditLog(tmp_path, sync=sync) as log:
            started = time.perf_counter()
            await asyncio.gather(*(log.commit(_event(i)) for i in range(60)))
            return time.perf_counter() - started

    elapsed = asyncio.run(run())
    result = verify(tmp_path)
    assert result.ok and result.lines == 60, result
    if sync:
        # every commit waited for its window, and the 60 shared a few fsyncs, not 60 windows
        assert sync <= elapsed < 30 * sync, elapsed


def test_a_batch_waiter_returns_once_the_window_is_fsynced(tmp_path: Path) -> None:
    async def run() -> list[float]:
        with AuditLog(tmp_path, sync=0.05) as log:
            started = time.perf_counter()
            first = asyncio.create_task(log.commit(_event(1)))
            await asyncio.sleep(0.02)
            second = asyncio.create_task(log.commit(_event(2)))
            times = []
            for task in (first, second):
                await task
                times.append(time.perf_counter() - started)
            return times

    first, second = asyncio.run(run())
    assert first >= 0.05 and second >= 0.05  # both waited for the window's fsync


def test_closing_with_a_pending_batch_fsyncs_it(tmp_path: Path) -> None:
    async def run() -> None:
        log = AuditLog(tmp_path, sync=0.05)
        pending = asyncio.create_task(log.commit(_event(1)))
        await asyncio.sleep(0.01)
        log.close()  # the last fsync covers the pending line: its waiter may go on
        await pending
        with pytest.raises(ValueError, match="closed"):
            await log.commit(_event(2))

    asyncio.run(run())
    assert verify(tmp_path).lines == 1


@pytest.mark.parametrize(
    ("text", "window"),
    [("always", 0.0), ("", 0.0), ("none", None), ("5ms", 0.005), (" 1000MS ", 1.0)],
)
def test_parse_sync(text: str, window: float | None) -> None:
    assert parse_sync(text) == window


@pytest.mark.parametrize("text", ["0ms", "1001ms", "5 s", "fast", "-5ms", "5.5ms"])
def test_parse_sync_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="always"):
        parse_sync(text)
