"""Logging: human-readable lines by default, one JSON object per line with
GATRIX_LOG_FORMAT=json; both carry the request id of the request being handled."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


_errors = logging.getLogger("gatrix.errors")


def log_unexpected(exc: BaseException, where: str) -> str:
    """Log an exception nobody handled, traceback included, under the current request id;
    returns that id so the reply can quote it."""
    rid = request_id.get()
    # the id rides on the record itself as well, so handlers without our filter see it too
    _errors.error("unexpected error in %s", where, exc_info=exc, extra={"request_id": rid})
    return rid


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# control characters written into a text log line as escapes: a request path with `%0a` in
# it must not start a line of its own (a forged entry), nor a NUL make the file binary. C1
# controls (NEL, the one-byte CSI) and the Unicode line and paragraph separators count too:
# terminals and line splitters treat them as line breaks or escape sequences.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))} | {
    10: "\\n",
    13: "\\r",
    9: "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


class TextFormatter(logging.Formatter):
    """One line per record: the message and request id with control characters escaped (a
    traceback, added after the message, keeps its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROLS)
        record.request_id = str(getattr(record, "request_id", "-")).translate(_CONTROLS)
        return super().formatMessage(record)


class CurrentStderr(logging.StreamHandler):
    """Writes to `sys.stderr` as it is when a record is emitted, not as it was when the
    handler was made: a server started inside another program (a test run that swaps the
    stream per test) would otherwise keep writing to a stream closed since."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(level: str, fmt: str) -> None:
    handler = CurrentStderr()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # SAQ logs every job at INFO; a flush a second would drown everything else.
    logging.getLogger("saq").setLevel(logging.WARNING)
