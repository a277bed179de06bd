"""What the project settings page shows about ingestion: today's accepted and dropped events
by reason, the last event, the buffer, and the first event (the install check)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gatrix.meta.timezones import usable
from gatrix.services import Services


def for_people(moment: datetime, timezone: str) -> str:
    """A moment as a person reads it, in the project's zone: `Nov 27, 14:05:09`."""
    local = moment.astimezone(ZoneInfo(usable(timezone)))
    return f"{local:%b} {local.day}, {local:%H:%M:%S}"


def _first_event(services: Services, project_id: str, timezone: str) -> dict[str, Any] | None:
    store = services.store
    rows = store.query_dicts(
        f"SELECT name, path, created_at FROM {store.db}.events "
        "WHERE project_id = {p:String} ORDER BY created_at ASC LIMIT 1",
        {"p": project_id},
    )
    if not rows:
        return None
    at = rows[0]["created_at"]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return {
        "name": rows[0]["name"],
        "path": rows[0]["path"],
        "at": at.isoformat(),
        "shown": for_people(at, timezone),
    }


async def first_event(services: Services, project_id: str, timezone: str) -> dict[str, Any] | None:
    return await asyncio.to_thread(_first_event, services, project_id, timezone)


def _last_event_at(services: Services, project_id: str, timezone: str) -> str | None:
    store = services.store
    value = store.query_rows(
        f"SELECT max(created_at) FROM {store.db}.events WHERE project_id = {{p:String}}",
        {"p": project_id},
    )[0][0]
    if value is None or value.year < 2000:
        return None
    return for_people(value.replace(tzinfo=UTC) if value.tzinfo is None else value, timezone)


async def project_health(services: Services, project_id: str, timezone: str) -> dict[str, Any]:
    await services.counters.flush()  # include this process's last seconds
    today = time.strftime("%Y-%m-%d", time.gmtime())
    outcomes = await services.counters.read_day(today, project_id)
    accepted = outcomes.pop("accepted", 0)
    profile_updates = sum(outcomes.pop(kind, 0) for kind in ("identify", "increment", "decrement"))
    buffer = services.supervisor.state  # read every half second; no extra round trip
    return {
        "day": today,
        "accepted": accepted,
        "profile_updates": profile_updates,
        "dropped": dict(sorted(outcomes.items())),
        "last_event": await asyncio.to_thread(_last_event_at, services, project_id, timezone),
        "buffer_depth": buffer.depth,
        "dead_letters": buffer.dead_letters,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
