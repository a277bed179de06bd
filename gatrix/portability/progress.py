"""The import's progress line on stderr: events written, events/s, and the time left
(estimated from the bytes of input done, since the number of events is known only at the
end for formats without a session pass)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total_bytes: int, out: TextIO = sys.stderr, every_s: float = 0.5) -> None:
        self.total = max(total_bytes, 1)
        self.out = out
        self.every_s = every_s
        self.started = time.monotonic()
        self.shown = 0.0
        self.bytes = 0
        self.events = 0
        self.live = out.isatty()
        self.last: tuple[int, int] | None = None  # (bytes, events) of the line last written

    def advance(self, nbytes: int, events: int) -> None:
        self.bytes += nbytes
        self.events += events
        now = time.monotonic()
        if now - self.shown >= self.every_s:
            self.shown = now
            self._show(now, end="\r" if self.live else "\n")

    def _show(self, now: float, end: str) -> None:
        self.last = (self.bytes, self.events)
        elapsed = max(now - self.started, 1e-6)
        done = self.bytes / self.total
        eta = elapsed * (1 - done) / done if done else 0.0
        bar = "#" * int(done * 24)
        self.out.write(
            f"[{bar:<24}] {done:4.0%}  {self.events:,} events  "
            f"{self.events / elapsed:,.0f} events/s  ETA {eta:,.0f}s{end}"
        )
        self.out.flush()

    def finish(self) -> float:
        """The final line: on a terminal it ends the line being rewritten; in a log it is
        written only if the last line written is not already the final one."""
        now = time.monotonic()
        if self.live or self.last != (self.bytes, self.events):
            self._show(now, end="\n")
        return now - self.started
