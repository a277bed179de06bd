"""The text log: one line per record whatever a request puts in it."""

from __future__ import annotations

import io
import logging
import sys

import httpx
import pytest

from gatrix import logs
from gatrix.logs import TextFormatter

from ..conftest import LiveServer


def _line(message: str, *args: object, request_id: str = "r1") -> str:
    formatter = TextFormatter("%(levelname)s [%(request_id)s] %(message)s")
    record = logging.LogRecord("gatrix.http", logging.INFO, __file__, 1, message, args, None)
    record.request_id = request_id
    return formatter.format(record)


@pytest.mark.fast
def test_control_characters_cannot_start_a_line_of_their_own() -> None:
    forged = "/nope\n2026-11-29 19:00:00,000 ERROR gatrix.auth FORGED admin login\r\x00\x1b[31m"
    line = _line("GET %s 404", forged, request_id="a\nb")
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert line == (
        "INFO [a\\nb] GET /nope\\n2026-11-29 19:00:00,000 ERROR gatrix.auth FORGED admin "
        "login\\r\\x00\\x1b[31m 404"
    )
    assert _line("plain é ✓ text") == "INFO [r1] plain é ✓ text"  # printable text untouched
    # C1 controls (NEL, the one-byte CSI) and Unicode line separators, in a path or request id
    line = _line("GET /a\x85b\x9b31m\u2028c\u2029d", request_id="x\x85y")
    assert line.splitlines() == [line]
    assert line == "INFO [x\\x85y] GET /a\\x85b\\x9b31m\\u2028c\\u2029d"


@pytest.mark.fast
def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("gatrix.errors", logging.ERROR, __file__, 1, "failed", (), info)
    text = TextFormatter("%(message)s").format(record)
    assert text.startswith("failed\nTraceback") and "ValueError: boom" in text


def test_a_request_path_with_a_newline_logs_one_line(
    site: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the handler `gatrix serve` sets up, writing to stderr as it is now; put back afterwards
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    logs.configure("INFO", "text")
    reply = httpx.get(f"{site.url}/nope%0a2026-11-29%2019:00:00,000%20ERROR%20FORGED%1b")
    assert reply.status_code == 404
    written = captured.getvalue().splitlines()
    lines = [line for line in written if "FORGED" in line and " httpx " not in line]
    assert len(lines) == 1, lines
    assert "/nope\\n2026-11-29 19:00:00,000 ERROR FORGED\\x1b 404" in lines[0]
