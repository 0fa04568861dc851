"""Every configured secret of the test run, and every log line written during it.

Tests that configure secrets call :func:`register`; the root logger writes every record
(all levels, unscrubbed) to one file per run; ``test_zz_log_scan`` checks at the end that
no registered secret appears in it nor in any log directory the tests used.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

SECRETS: set[str] = set()
LOG_DIRS: set[Path] = set()
RUN_DIR = Path(tempfile.mkdtemp(prefix="keybroker-test-logs-"))
ALL_LOG = RUN_DIR / "all-records.log"


def register(*secrets: str) -> None:
    SECRETS.update(s for s in secrets if s)


def log_dir(path: Path) -> Path:
    LOG_DIRS.add(path)
    return path


class _EverythingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        return f"{text} {fields!r}" if fields else text


def install_root_handler() -> None:
    handler = logging.FileHandler(ALL_LOG, encoding="utf-8")
    handler.setFormatter(_EverythingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in (
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "asyncio",
        "azure",
        "google",
        "aliyunsdkcore",
        "volcenginesdkcore",
        "baidubce",
        "tencentcloud",
        "huaweicloudsdkcore",
        "jdcloud_sdk",
        "qiniu",
        "ucloud",
        "akamai",
    ):
        logging.getLogger(noisy).setLevel(logging.INFO)
