"""Structured logging: JSON lines in real files, levels, rotation, pruning, redaction."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.errors import ConfigError
from keybroker.logs.file import LOG_FILE_NAME, SizeRotatingFileHandler
from keybroker.logs.format import REQUEST_ID, JsonFormatter
from keybroker.logs.redact import SecretRegistry
from keybroker.logs.setup import (
    log_event,
    parse_level,
    request_log_line,
    reset_logging,
    setup_logging,
)
from keybroker.secret import Secret
from keybroker.settings import LogConfig

T0 = datetime(2026, 11, 25, 17, 13, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def configure(tmp_path: Path, level: str = "debug", **kw: object) -> Path:
    out = tmp_path / "log"
    setup_logging(LogConfig(output=str(out), level=level), **kw)  # type: ignore[arg-type]
    return out / LOG_FILE_NAME


# --- levels and the line format ------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "kept"),
    [
        ("debug", ["debug", "info", "warn", "error"]),
        ("info", ["info", "warn", "error"]),
        ("WARN", ["warn", "error"]),
        ("warning", ["warn", "error"]),
        ("error", ["error"]),
    ],
)
def test_level_filtering(tmp_path: Path, level: str, kept: list[str]) -> None:
    path = configure(tmp_path, level)
    log = logging.getLogger("keybroker.proxy")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["level"] for line in lines(path)] == kept


def test_unknown_level_is_a_config_error_and_keeps_the_old_setup(tmp_path: Path) -> None:
    path = configure(tmp_path, "info")
    with pytest.raises(ConfigError, match=r"^Log\.Level: must be one of debug, info, warn, error$"):
        setup_logging(LogConfig(output=str(tmp_path / "other"), level="verbose"))
    logging.getLogger("keybroker").info("still here")
    assert [line["msg"] for line in lines(path)] == ["still here"]
    assert not (tmp_path / "other").exists()


def test_parse_level() -> None:
    assert parse_level(" Debug ") == logging.DEBUG
    with pytest.raises(ConfigError):
        parse_level("trace")


def test_lines_are_json_with_time_level_logger_msg(tmp_path: Path) -> None:
    path = configure(tmp_path)
    before = datetime.now(UTC)
    logging.getLogger("keybroker.kms").info("wrapped %d keys", 3)
    (line,) = lines(path)
    assert list(line)[:5] == ["time", "level", "logger", "pid", "msg"]
    assert line["pid"] == os.getpid()
    assert TIME_RE.match(str(line["time"]))
    stamp = datetime.strptime(str(line["time"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((stamp - before).total_seconds()) < 5
    assert (line["level"], line["logger"], line["msg"]) == (
        "info",
        "keybroker.kms",
        "wrapped 3 keys",
    )


def test_structured_fields_and_log_event(tmp_path: Path) -> None:
    path = configure(tmp_path)
    log = logging.getLogger("keybroker.x")
    log.info("via extra", extra={"fields": {"account": "acct", "n": 2, "msg": "clash"}})
    log_event(
        log, "warn", "100% done", ratio=0.5, body=b"\x00" * 10, tags=("a", 1), nan=float("nan")
    )
    log_event("keybroker.y", logging.ERROR, "by name", ok=True, nothing=None)
    first, second, third = lines(path)
    assert first["account"] == "acct" and first["n"] == 2
    assert first["msg"] == "via extra" and first["fields.msg"] == "clash"
    assert second["msg"] == "100% done" and second["level"] == "warn"
    assert (second["ratio"], second["body"], second["tags"]) == (0.5, "<10 bytes>", ["a", 1])
    assert second["nan"] == "nan"
    assert (third["logger"], third["ok"], third["nothing"]) == ("keybroker.y", True, None)


def test_log_event_rejects_unknown_level_name() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        log_event("keybroker", "loud", "x")


def test_exception_is_one_line_field(tmp_path: Path) -> None:
    path = configure(tmp_path)
    try:
        raise RuntimeError("upstream closed\nmid-stream")
    except RuntimeError:
        logging.getLogger("keybroker").exception("forward failed")
    raw = path.read_text("utf-8")
    assert raw.count("\n") == 1
    (line,) = lines(path)
    exc = str(line["exc"])
    assert "\n" not in exc
    assert exc.startswith("Traceback (most recent call last):")
    assert exc.endswith("RuntimeError: upstream closed | mid-stream")


def test_request_id_context_is_on_every_line(tmp_path: Path) -> None:
    path = configure(tmp_path)
    token = REQUEST_ID.set("req-42")
    try:
        logging.getLogger("keybroker").info("inside")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("keybroker").info("outside")
    inside, outside = lines(path)
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_bad_format_arguments_do_not_lose_the_line(tmp_path: Path) -> None:
    path = configure(tmp_path)
    logging.getLogger("keybroker").info("%d items", "not a number")
    (line,) = lines(path)
    assert line["msg"] == "%d items (log arguments did not format)"


# --- redaction in lines --------------------------------------------------------------------

SIG = "0123456789abcdef0123456789abcdef"


def test_fields_are_redacted_by_name(tmp_path: Path) -> None:
    path = configure(tmp_path)
    log_event(
        "keybroker",
        "info",
        "forwarding",
        origin_uri=f"https://h/p?X-Amz-Signature={SIG}&a=1",
        headers={
            "Authorization": f"AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, "
            f"SignedHeaders=host, Signature={SIG}",
            "X-Amz-Security-Token": SIG,
            "Host": "h",
        },
        secret_key=SIG,
        access_token=SIG,
        proxy=Secret(SIG),
        nested={"client_secret": SIG, "deeper": {"authorization": f"Bearer {SIG}"}},
    )
    raw = path.read_text("utf-8")
    assert SIG not in raw
    (line,) = lines(path)
    assert line["origin_uri"] == "https://h/p?X-Amz-Signature=***&a=1"
    assert line["headers"] == {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request",
        "X-Amz-Security-Token": "***",
        "Host": "h",
    }
    assert line["secret_key"] == line["access_token"] == line["proxy"] == "***"
    assert line["nested"] == {"client_secret": "***", "deeper": {"authorization": "Bearer ***"}}


def test_registered_secrets_are_scrubbed_from_files(tmp_path: Path) -> None:
    registry = SecretRegistry()
    registry.register("real-secret-KEY/abc+", 'odd"secret\\é')
    path = configure(tmp_path, registry=registry)
    log = logging.getLogger("keybroker.vendor")
    log.error("vendor said: bad key real-secret-KEY/abc+ for %s", 'odd"secret\\é')
    log_event(log, "info", "x", detail='["odd\\"secret\\\\é"]', note="real-secret-KEY/abc+")
    try:
        raise ValueError("real-secret-KEY/abc+")
    except ValueError:
        log.exception("boom")
    raw = path.read_text("utf-8")
    assert "real-secret-KEY/abc+" not in raw
    assert json.dumps('odd"secret\\é')[1:-1] not in raw
    for line in lines(path):
        assert "real-secret-KEY/abc+" not in json.dumps(line, ensure_ascii=False)
        assert 'odd"secret\\é' not in json.dumps(line, ensure_ascii=False)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=st.text(min_size=6, max_size=24),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    where=st.sampled_from(["msg", "arg", "field", "key", "nested", "exc", "list"]),
)
def test_fuzz_a_registered_secret_never_reaches_a_line(
    secret: str, before: str, after: str, where: str
) -> None:
    registry = SecretRegistry()
    registry.register(secret)
    formatter = JsonFormatter(registry)
    embedded = before + secret + after
    msg, args, fields = "event", (), {}  # type: tuple[str, tuple[object, ...], dict[str, object]]
    exc_info = None
    if where == "msg":
        msg = embedded.replace("%", "%%")
    elif where == "arg":
        msg, args = "value %s", (embedded,)
    elif where == "field":
        fields = {"detail": embedded}
    elif where == "key":
        fields = {embedded: 1}
    elif where == "nested":
        fields = {"outer": {"inner": [embedded]}}
    elif where == "list":
        fields = {"items": [1, embedded]}
    else:
        try:
            raise ValueError(embedded)
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("keybroker.fuzz", logging.INFO, __file__, 1, msg, args, exc_info)
    record.fields = fields
    line = formatter.format(record)
    assert "\n" not in line
    assert secret not in line
    assert json.dumps(secret)[1:-1] not in line
    decoded = json.loads(line)
    assert all(secret not in s for s in _strings(decoded))


def test_request_log_line_has_the_access_fields_and_no_secret(tmp_path: Path) -> None:
    path = configure(tmp_path, "info")
    fields = request_log_line(
        request_id="r-1",
        method="POST",
        mode="keyproxy",
        account="acct",
        vendor="aws",
        service="s3",
        action="PutObject",
        upstream_host=f"https://user:{SIG}@bucket.s3.amazonaws.com:443/k?X-Amz-Signature={SIG}",
        status=200,
        bytes_in=1234,
        bytes_out=56,
        latency_ms=12.34567,
    )
    request_log_line(
        request_id="r-2", method="GET", mode="native", status=502, error_code="Proxy.NetworkErr"
    )
    ok, failed = lines(path)
    assert SIG not in path.read_text("utf-8")
    assert ok["logger"] == "keybroker.access" and ok["level"] == "info" and ok["msg"] == "request"
    expected = {
        "request_id": "r-1",
        "client_request_id": None,
        "method": "POST",
        "mode": "keyproxy",
        "account": "acct",
        "vendor": "aws",
        "service": "s3",
        "action": "PutObject",
        "upstream_host": "bucket.s3.amazonaws.com:443",
        "status": 200,
        "bytes_in": 1234,
        "bytes_out": 56,
        "latency_ms": 12.346,
        "error_code": None,
    }
    assert {k: ok[k] for k in expected} == expected == fields
    assert (failed["level"], failed["status"], failed["error_code"]) == (
        "warn",
        502,
        "Proxy.NetworkErr",
    )


def test_request_log_line_caps_request_strings_and_checks_mode() -> None:
    fields = request_log_line(request_id="x" * 5000, method="GET", mode="native", status=200)
    assert fields["request_id"] == "x" * 256
    with pytest.raises(ValueError, match=r"^mode must be 'keyproxy', 'native' or 'keyservice'$"):
        request_log_line(request_id="r", method="GET", mode="proxy", status=200)


# --- set-up, reconfiguration, outputs ------------------------------------------------------


def test_reconfiguring_does_not_duplicate_lines(tmp_path: Path) -> None:
    path = configure(tmp_path)
    configure(tmp_path)
    configure(tmp_path, "info")
    logging.getLogger("keybroker.a").info("once")
    assert [line["msg"] for line in lines(path)] == ["once"]
    ours = [
        h for h in logging.getLogger("keybroker").handlers if isinstance(h, SizeRotatingFileHandler)
    ]
    assert len(ours) == 1


def test_reconfiguring_moves_output_and_keeps_foreign_handlers(tmp_path: Path) -> None:
    first = configure(tmp_path / "one")
    foreign = logging.NullHandler()
    logger = logging.getLogger("keybroker")
    logger.addHandler(foreign)
    try:
        logger.info("to one")
        second = configure(tmp_path / "two")
        logger.info("to two")
        assert foreign in logger.handlers
    finally:
        logger.removeHandler(foreign)
    assert [line["msg"] for line in lines(first)] == ["to one"]
    assert [line["msg"] for line in lines(second)] == ["to two"]


def test_reset_restores_propagation(tmp_path: Path) -> None:
    configure(tmp_path)
    assert logging.getLogger("keybroker").propagate is False
    reset_logging()
    logger = logging.getLogger("keybroker")
    assert logger.propagate is True and logger.level == logging.NOTSET
    assert not any(isinstance(h, SizeRotatingFileHandler) for h in logger.handlers)


def test_output_directory_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c"
    setup_logging(LogConfig(output=str(out)))
    logging.getLogger("keybroker").warning("made")
    assert lines(out / "key_proxy.log")[0]["msg"] == "made"


def test_output_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"^Log\.Output: cannot write logs in "):
        setup_logging(LogConfig(output=str(blocker)))


@pytest.mark.parametrize("output", ["", "-", " - "])
def test_stderr_output(output: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogConfig(output=output, level="info"))
    logging.getLogger("keybroker").info("to stderr", extra={"fields": {"k": "v"}})
    err = capsys.readouterr().err
    (line,) = [json.loads(x) for x in err.splitlines()]
    assert (line["msg"], line["k"]) == ("to stderr", "v")


@pytest.mark.parametrize(("age", "size"), [(0, 0), (-3, -1)])
def test_non_positive_limits_mean_key_proxy_defaults(tmp_path: Path, age: int, size: int) -> None:
    setup_logging(LogConfig(output=str(tmp_path), max_age=age, max_size=size))
    (handler,) = [
        h for h in logging.getLogger("keybroker").handlers if isinstance(h, SizeRotatingFileHandler)
    ]
    assert handler.max_age_days == 14
    assert handler.max_bytes == 100 * 1024 * 1024


# --- rotation and pruning ------------------------------------------------------------------


def make_handler(
    directory: Path, clock: Clock, max_bytes: int = 1000, days: int = 14
) -> logging.Logger:
    handler = SizeRotatingFileHandler(
        directory, max_bytes=max_bytes, max_age_days=days, clock=clock
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"rotation-test-{id(handler)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger


def close(logger: logging.Logger) -> None:
    for h in logger.handlers:
        h.close()
    logger.handlers = []


def test_rotation_by_size_keeps_every_line_and_each_file_under_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    logger = make_handler(tmp_path, clock, max_bytes=1000)
    sent = []
    for i in range(60):
        clock.now = T0 + i * 2  # a new second per line: distinct rotation names
        sent.append(f"line {i:03d} " + "x" * 80)
        logger.info(sent[-1])
    close(logger)
    rotated = sorted(p for p in tmp_path.iterdir() if p.name != LOG_FILE_NAME)
    assert len(rotated) >= 5
    assert all(re.fullmatch(r"key_proxy\.log\.\d{8}T\d{6}Z", p.name) for p in rotated)
    files = [*rotated, tmp_path / LOG_FILE_NAME]
    assert all(p.stat().st_size <= 1000 for p in files)
    got = [line for p in files for line in p.read_text().splitlines()]
    assert got == sent


def test_rotated_names_use_the_utc_clock_and_are_never_overwritten(tmp_path: Path) -> None:
    clock = Clock()  # frozen: every rotation wants the same name
    logger = make_handler(tmp_path, clock, max_bytes=100)
    for i in range(4):
        logger.info(f"{i}" * 90)
    close(logger)
    names = sorted(p.name for p in tmp_path.iterdir())
    stamp = "20261125T171300Z"
    assert names == [
        "key_proxy.log",
        f"key_proxy.log.{stamp}",
        f"key_proxy.log.{stamp}.1",
        f"key_proxy.log.{stamp}.2",
    ]
    assert (tmp_path / f"key_proxy.log.{stamp}").read_text() == "0" * 90 + "\n"
    assert (tmp_path / f"key_proxy.log.{stamp}.2").read_text() == "2" * 90 + "\n"


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    logger = make_handler(tmp_path, Clock(), max_bytes=50)
    logger.info("y" * 200)
    logger.info("short")
    close(logger)
    assert (tmp_path / LOG_FILE_NAME).read_text() == "short\n"


def _touch_rotated(directory: Path, at: float, suffix: str = "") -> Path:
    stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{LOG_FILE_NAME}.{stamp}{suffix}"
    path.write_text("old\n")
    return path


def test_startup_prunes_rotated_files_older_than_max_age(tmp_path: Path) -> None:
    old = _touch_rotated(tmp_path, T0 - 15 * DAY)
    old_dup = _touch_rotated(tmp_path, T0 - 15 * DAY, ".1")
    young = _touch_rotated(tmp_path, T0 - 13 * DAY)
    strangers = [
        tmp_path / "key_proxy.log.bak",
        tmp_path / "other.log.20000101T000000Z",
        tmp_path / "key_proxy.log.20000101T000000Z.gz",
    ]
    for p in strangers:
        p.write_text("keep")
    setup_logging(LogConfig(output=str(tmp_path), max_age=14), clock=Clock())
    assert not old.exists() and not old_dup.exists()
    assert young.exists() and all(p.exists() for p in strangers)


def test_rotation_prunes_by_age_with_the_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    logger = make_handler(tmp_path, clock, max_bytes=100, days=2)
    logger.info("a" * 90)
    clock.now += 1 * DAY
    logger.info("b" * 90)  # rotates the "a" file (named at day 1)
    clock.now += 1 * DAY
    logger.info("c" * 90)  # rotates "b" (day 2)
    assert len(list(tmp_path.iterdir())) == 3
    clock.now += 1.5 * DAY
    logger.info("d" * 90)  # day 3.5: rotates "c"; the day-1 file is now older than 2 days
    close(logger)
    kept = sorted(p.read_text()[0] for p in tmp_path.iterdir())
    assert kept == ["b", "c", "d"]


def test_rotation_through_setup_logging_with_megabyte_limit(tmp_path: Path) -> None:
    clock = Clock()
    setup_logging(LogConfig(output=str(tmp_path), level="info", max_size=1), clock=clock)
    log = logging.getLogger("keybroker.bulk")
    payload = "z" * 1000
    for i in range(1100):
        log.info(payload, extra={"fields": {"i": i}})
    reset_logging()
    rotated = tmp_path / "key_proxy.log.20261125T171300Z"
    assert rotated.exists() and rotated.stat().st_size <= 1024 * 1024
    indices = [line["i"] for p in (rotated, tmp_path / LOG_FILE_NAME) for line in lines(p)]
    assert indices == list(range(1100))


def test_another_process_rotating_is_noticed(tmp_path: Path) -> None:
    clock = Clock()
    logger = make_handler(tmp_path, clock, max_bytes=100)
    logger.info("mine " * 10)
    # someone else moved the file away; our next rotation check must reopen, not rename twice
    os.rename(tmp_path / LOG_FILE_NAME, tmp_path / "key_proxy.log.20261125T170000Z")
    (tmp_path / LOG_FILE_NAME).write_text("theirs " * 10 + "\n")
    logger.info("next " * 12)
    close(logger)
    assert (tmp_path / "key_proxy.log.20261125T170000Z").read_text() == "mine " * 10 + "\n"
    assert (tmp_path / "key_proxy.log.20261125T171300Z").read_text() == "theirs " * 10 + "\n"
    assert (tmp_path / LOG_FILE_NAME).read_text() == "next " * 12 + "\n"


# --- concurrency ---------------------------------------------------------------------------


def test_threads_write_whole_lines_through_rotation(tmp_path: Path) -> None:
    clock = Clock()
    setup_logging(LogConfig(output=str(tmp_path), level="info"), clock=clock)
    (handler,) = [
        h for h in logging.getLogger("keybroker").handlers if isinstance(h, SizeRotatingFileHandler)
    ]
    handler.max_bytes = 20_000  # rotate often while the threads write

    def work(t: int) -> None:
        log = logging.getLogger(f"keybroker.t{t}")
        for i in range(250):
            log.info("w", extra={"fields": {"t": t, "i": i, "pad": "p" * 50}})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    reset_logging()
    files = list(tmp_path.iterdir())
    assert len(files) > 5
    seen = sorted((line["t"], line["i"]) for p in files for line in lines(p))
    assert seen == sorted((t, i) for t in range(8) for i in range(250))


WORKER = textwrap.dedent(
    """
    import logging, sys
    from keybroker.settings import LogConfig
    from keybroker.logs.setup import setup_logging
    setup_logging(LogConfig(output=sys.argv[1], level="info"))
    log = logging.getLogger("keybroker.worker")
    for i in range(int(sys.argv[3])):
        log.info("w", extra={"fields": {"p": sys.argv[2], "i": i, "pad": "q" * 3000}})
    """
)


def test_worker_processes_append_whole_lines_to_one_file(tmp_path: Path) -> None:
    n = 400
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(p), str(n)])
        for p in range(3)
    ]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    seen = sorted((line["p"], line["i"]) for line in lines(tmp_path / LOG_FILE_NAME))
    assert seen == sorted((str(p), i) for p in range(3) for i in range(n))


def test_worker_processes_rotate_without_losing_or_tearing_lines(tmp_path: Path) -> None:
    script = WORKER.replace('level="info"', 'level="info", max_size=1')
    n = 300  # 3 x 300 lines of ~3 KB: about 2.7 MB, so two or three rotations
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(p), str(n)])
        for p in range(3)
    ]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    files = list(tmp_path.iterdir())
    assert len(files) >= 3
    seen = {(line["p"], line["i"]) for p in files for line in lines(p)}
    assert seen == {(str(p), i) for p in range(3) for i in range(n)}
    # A hard-linked duplicate (simultaneous rotation) may hold a little more; never much.
    assert all(p.stat().st_size <= 1024 * 1024 + 3 * 4096 for p in files)
