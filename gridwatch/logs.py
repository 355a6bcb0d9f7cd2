"""How every `gridwatch` command logs: text for people, or one JSON object a line for log collectors."""

from __future__ import annotations

import json
import logging
import os
import sys


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line, for log collectors (Loki, Elasticsearch): time, level, logger, message, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "process": record.process, "thread": record.threadName}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log lines to stderr, as text or one JSON object a line (`--log-format`), with the chattiest libraries
    quieted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at every start
    if fmt == "json":  # FFmpeg's own lines (a camera's stream refused) are not JSON: OpenCV keeps them quiet
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    for name in ("httpx", "httpcore"):  # a line per webhook delivery, with the receiver's whole URL: its user,
        logging.getLogger(name).setLevel(logging.WARNING)  # password and ?token= (webhooks log it redacted)
