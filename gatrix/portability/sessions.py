"""Sessions of imported events: a visitor's events with less than 30 minutes between them,
the live path's rule, decided over everything one import brings in (all its files).

Each event arrives as (visitor hash, time) in its chunk's order; the answer is each event's
session start. The session id is derived from the visitor and that start
(`work.session_ids`), so the same import always gives the same ids. Imported sessions never
merge with live ones.
"""

from __future__ import annotations

import numpy as np

from gatrix.ingest.salts import SESSION_TIMEOUT_MS

GAP_MS = SESSION_TIMEOUT_MS
DROPPED = -1  # a time of -1: the event will be dropped; it takes no part in any session
# the last millisecond ClickHouse's DateTime64 holds (2299-12-31 23:59:59.999 UTC): a record
# timed later is invalid (it also keeps a session's start within the 12 hex digits of its id)
LATEST_MS = 10_413_791_999_999


def session_starts(visitors: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Start (epoch ms) of each event's session; DROPPED where the event is dropped."""
    starts = np.full(len(times), DROPPED, dtype=np.int64)
    kept = np.flatnonzero(times != DROPPED)
    if not len(kept):
        return starts
    order = kept[np.lexsort((times[kept], visitors[kept]))]
    v, t = visitors[order], times[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (t[1:] - t[:-1] > GAP_MS)
    first = np.flatnonzero(new)
    session_of = np.cumsum(new) - 1
    starts[order] = t[first][session_of]
    return starts
