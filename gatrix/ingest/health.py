"""What the project settings page shows about ingestion: today's accepted and dropped events
by reason, the last event, the buffer, and the first event (the install check)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from gatrix.runtime import Runtime


def _first_event(runtime: Runtime, project_id: str) -> dict[str, Any] | None:
    store = runtime.store
    assert store is not None
    rows = store.query_dicts(
        f"SELECT name, path, created_at FROM {store.db}.events "
        "WHERE project_id = {p:String} ORDER BY created_at ASC LIMIT 1",
        {"p": project_id},
    )
    if not rows:
        return None
    at = rows[0]["created_at"]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return {"name": rows[0]["name"], "path": rows[0]["path"], "at": at.isoformat()}


async def first_event(runtime: Runtime, project_id: str) -> dict[str, Any] | None:
    return await asyncio.to_thread(_first_event, runtime, project_id)


def _last_event_at(runtime: Runtime, project_id: str) -> str | None:
    store = runtime.store
    assert store is not None
    value = store.query_rows(
        f"SELECT max(created_at) FROM {store.db}.events WHERE project_id = {{p:String}}",
        {"p": project_id},
    )[0][0]
    if value is None or value.year < 2000:
        return None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


async def project_health(runtime: Runtime, project_id: str) -> dict[str, Any]:
    assert runtime.counters is not None and runtime.buffer is not None
    await runtime.counters.flush()  # include this process's last seconds
    today = time.strftime("%Y-%m-%d", time.gmtime())
    outcomes = await runtime.counters.read_day(today, project_id)
    accepted = outcomes.pop("accepted", 0)
    profile_updates = sum(outcomes.pop(kind, 0) for kind in ("identify", "increment", "decrement"))
    buffer = await runtime.buffer.stats()
    return {
        "day": today,
        "accepted": accepted,
        "profile_updates": profile_updates,
        "dropped": dict(sorted(outcomes.items())),
        "last_event": await asyncio.to_thread(_last_event_at, runtime, project_id),
        "buffer_depth": buffer["depth"],
        "dead_letters": buffer["dead_letters"],
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
