"""The bounded readers every object-store backend reads through: whatever the pieces a server
sends (with or without a Content-Length), at most the blob limit plus one piece is read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.kms.errors import IntegrityError
from keybroker.kms.storage import MAX_BLOB_BYTES
from keybroker.kms.storage._common import BoundedSink, read_bounded

PIECE = 16 * 1024


class Server:
    """A body that answers each read(n) with at most ``n`` bytes, in the sizes it chooses."""

    def __init__(self, total: int, sizes: list[int]) -> None:
        self.left = total
        self.sizes = sizes or [PIECE]
        self.sent = 0
        self.calls = 0

    def read(self, n: int) -> bytes:
        size = min(n, self.left, self.sizes[self.calls % len(self.sizes)])
        self.calls += 1
        self.left -= size
        self.sent += size
        return b"x" * size


sizes = st.lists(st.integers(1, 3 * PIECE), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, MAX_BLOB_BYTES), pieces=sizes)
def test_objects_within_the_limit_are_read_whole(total: int, pieces: list[int]) -> None:
    server = Server(total, pieces)
    assert read_bounded(server.read, "k") == b"x" * total


@settings(max_examples=60, deadline=None)
@given(total=st.integers(MAX_BLOB_BYTES + 1, 64 * MAX_BLOB_BYTES), pieces=sizes)
def test_larger_objects_stop_one_piece_past_the_limit(total: int, pieces: list[int]) -> None:
    server = Server(total, pieces)
    with pytest.raises(IntegrityError, match=f"'k' is larger than the {MAX_BLOB_BYTES}-byte"):
        read_bounded(server.read, "k")
    assert server.sent <= MAX_BLOB_BYTES + PIECE


@settings(max_examples=60, deadline=None)
@given(writes=st.lists(st.integers(0, 3 * PIECE), max_size=12))
def test_sink_keeps_at_most_the_limit(writes: list[int]) -> None:
    sink = BoundedSink("k")
    written = 0
    for size in writes:
        if written + size > MAX_BLOB_BYTES:
            with pytest.raises(IntegrityError, match="blob limit"):
                sink.write(b"y" * size)
            return
        assert sink.write(b"y" * size) == size
        written += size
    assert sink.getvalue() == b"y" * written
