"""The import's progress line: in a log (not a terminal) each state is written once."""

from __future__ import annotations

import io

import pytest

from gatrix.portability.progress import Progress

pytestmark = pytest.mark.fast


def test_the_final_line_is_not_written_twice_in_a_log() -> None:
    out = io.StringIO()
    progress = Progress(100, out, every_s=0.0)
    progress.advance(50, 5)
    progress.advance(50, 5)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[" + "#" * 24 + "] 100%  10 events")


def test_a_final_state_not_yet_shown_is_written() -> None:
    out = io.StringIO()
    progress = Progress(100, out, every_s=0.0)
    progress.advance(100, 7)
    progress.every_s = 3600.0
    progress.advance(0, 3)  # within the interval: not shown
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "10 events" in lines[-1]
