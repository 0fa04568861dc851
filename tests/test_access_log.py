"""The access line's own path: formatted without a LogRecord, buffered, and still complete."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.logs.file import LOG_FILE_NAME, SizeRotatingFileHandler
from keybroker.logs.format import REQUEST_ID, JsonFormatter
from keybroker.logs.redact import SecretRegistry
from keybroker.logs.setup import ACCESS_LOGGER, request_log_line, reset_logging, setup_logging
from keybroker.settings import LogConfig


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def configure(tmp_path: Path, level: str = "info") -> Path:
    setup_logging(LogConfig(output=str(tmp_path), level=level))
    return tmp_path / LOG_FILE_NAME


def handler() -> SizeRotatingFileHandler:
    (found,) = [
        h for h in logging.getLogger("keybroker").handlers if isinstance(h, SizeRotatingFileHandler)
    ]
    return found


def access(i: int, status: int = 200) -> dict[str, object]:
    return request_log_line(
        request_id=f"r-{i}", method="GET", mode="keyproxy", status=status, latency_ms=1.5
    )


def ids(path: Path) -> list[object]:
    if not path.exists():
        return []
    return [json.loads(x).get("request_id") for x in path.read_text().splitlines()]


def wait_for(predicate: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- the same line as the LogRecord path -----------------------------------------------------

texts = st.one_of(st.none(), st.text(max_size=40))


@settings(max_examples=300)
@given(
    request_id=st.text(max_size=40),
    method=st.text(max_size=10),
    account=texts,
    action=texts,
    upstream=texts,
    error_code=texts,
    status=st.integers(0, 999),
    bytes_out=st.integers(0, 1 << 40),
    latency=st.floats(min_value=0, max_value=1e9),
    created=st.floats(min_value=0, max_value=4e9),
    secret=st.sampled_from(["", "acct-secret-1", '","method":"', "keybroker.access", "GetObject"]),
    context_id=st.one_of(st.none(), st.text(max_size=8)),
)
def test_direct_line_is_the_formatter_line(
    request_id: str,
    method: str,
    account: str | None,
    action: str | None,
    upstream: str | None,
    error_code: str | None,
    status: int,
    bytes_out: int,
    latency: float,
    created: float,
    secret: str,
    context_id: str | None,
) -> None:
    registry = SecretRegistry()
    registry.register(secret)
    formatter = JsonFormatter(registry)
    sink = logging.getLogger("access-format-test")
    sink.propagate, sink.disabled = False, True  # request_log_line only builds the fields here
    fields = request_log_line(
        request_id=request_id,
        method=method,
        mode="native",
        status=status,
        account=account,
        vendor="aws",
        service=action,
        action=action,
        upstream_host=upstream,
        bytes_out=bytes_out,
        latency_ms=latency,
        error_code=error_code,
        logger=sink,
    )
    level = logging.WARNING if status >= 500 else logging.INFO
    record = logging.LogRecord(ACCESS_LOGGER, level, __file__, 1, "request", None, None)
    record.created = created
    record.fields, record.trusted_fields = fields, True
    token = REQUEST_ID.set(context_id)
    try:
        assert formatter.format_access(ACCESS_LOGGER, level, fields, created) == formatter.format(
            record
        )
    finally:
        REQUEST_ID.reset(token)


def test_a_non_finite_latency_takes_the_record_path(tmp_path: Path) -> None:
    path = configure(tmp_path)
    request_log_line(request_id="r", method="GET", mode="native", status=200, latency_ms=1e400)
    reset_logging()
    assert '"latency_ms":Infinity,' in path.read_text()  # as json.dumps spells it


# --- who gets the line -----------------------------------------------------------------------


def test_level_is_honoured(tmp_path: Path) -> None:
    path = configure(tmp_path, "warn")
    access(1)
    access(2, status=503)
    assert ids(path) == ["r-2"]


def test_a_foreign_handler_or_filter_still_sees_the_record(tmp_path: Path) -> None:
    path = configure(tmp_path)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    access_logger = logging.getLogger(ACCESS_LOGGER)
    extra = Keep()
    access_logger.addHandler(extra)
    try:
        access(1)
    finally:
        access_logger.removeHandler(extra)
    access_logger.addFilter(lambda record: False)
    try:
        access(2)
    finally:
        access_logger.filters.clear()
    access(3)
    reset_logging()
    assert [r.fields["request_id"] for r in seen] == ["r-1"]  # type: ignore[attr-defined]
    assert ids(path) == ["r-1", "r-3"]


# --- buffering -------------------------------------------------------------------------------


def test_buffered_lines_reach_the_file_within_a_fraction_of_a_second(tmp_path: Path) -> None:
    path = configure(tmp_path)
    access(1)
    access(2)
    wait_for(lambda: ids(path) == ["r-1", "r-2"], seconds=2)


def test_other_lines_and_warnings_write_the_buffer_first(tmp_path: Path) -> None:
    path = configure(tmp_path)
    access(1)
    logging.getLogger("keybroker.proxy").info("event")
    assert ids(path) == ["r-1", None]
    access(2)
    access(3, status=502)  # warn: written at once, after what came before
    assert ids(path) == ["r-1", None, "r-2", "r-3"]


def test_a_full_buffer_is_written_at_once(tmp_path: Path) -> None:
    path = configure(tmp_path)
    n = 0
    while not path.stat().st_size:
        n += 1
        access(n)
        assert n < 10_000
    assert 64 * 1024 <= path.stat().st_size < 64 * 1024 + 1000
    assert ids(path) == [f"r-{i}" for i in range(1, n + 1)]


def test_rotation_keeps_every_buffered_line_in_order(tmp_path: Path) -> None:
    configure(tmp_path)
    handler().max_bytes = 5000
    for i in range(400):
        access(i)
    reset_logging()
    files = sorted(tmp_path.iterdir(), key=_rotation_order)
    assert len(files) > 10
    assert all(p.stat().st_size <= 5000 for p in files)
    got = [x for p in files for x in ids(p)]
    assert got == [f"r-{i}" for i in range(400)]


def _rotation_order(path: Path) -> tuple[bool, str, int]:
    """Oldest first: ``key_proxy.log.<stamp>``, its ``.1``, ``.2``, ..., then the live file."""
    if path.name == LOG_FILE_NAME:
        return (True, "", 0)
    stamp, _, n = path.name.removeprefix(LOG_FILE_NAME + ".").partition(".")
    return (False, stamp, int(n or 0))


def test_close_and_reconfiguration_write_the_buffer(tmp_path: Path) -> None:
    first = configure(tmp_path / "one")
    access(1)
    second = configure(tmp_path / "two")
    assert ids(first) == ["r-1"]
    access(2)
    reset_logging()
    assert ids(second) == ["r-2"]


EXITING = textwrap.dedent(
    """
    import sys
    from keybroker.settings import LogConfig
    from keybroker.logs.setup import request_log_line, setup_logging
    setup_logging(LogConfig(output=sys.argv[1], level="info"))
    for i in range(int(sys.argv[2])):
        request_log_line(request_id=f"r-{i}", method="GET", mode="native", status=200)
    """
)


def test_lines_buffered_at_exit_are_written(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", EXITING, str(tmp_path), "50"], check=True, timeout=60)
    assert ids(tmp_path / LOG_FILE_NAME) == [f"r-{i}" for i in range(50)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_buffer(tmp_path: Path) -> None:
    path = configure(tmp_path)
    access(1)
    pid = os.fork()
    if pid == 0:  # the child: one line of its own, then leave without running atexit
        code = 0
        try:
            access(2)
            handler().flush()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reset_logging()
    assert sorted(ids(path)) == ["r-1", "r-2"]  # type: ignore[type-var]
