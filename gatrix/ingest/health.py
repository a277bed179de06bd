"""What the project settings page shows about ingestion: today's accepted and dropped events
by reason, the last event, the buffer, and the install check.

The install check and the figures below it read the same sources, so they cannot disagree:
an event counts as arrived once ingestion accepted it (the counters in Redis), before the
flush has written it to ClickHouse; the first event's name and page come from ClickHouse.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gatrix.meta.timezones import usable
from gatrix.services import Services

# the install check's states: nothing accepted yet; accepted but not yet in ClickHouse (the
# buffer is being written, or the flush is failing); stored
WAITING, ARRIVING, STORED = "waiting", "arriving", "stored"


def for_people(moment: datetime, timezone: str) -> str:
    """A moment as a person reads it, in the project's zone: `Nov 27, 14:05`."""
    local = moment.astimezone(ZoneInfo(usable(timezone)))
    return f"{local:%b} {local.day}, {local:%H:%M}"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at  # ClickHouse gives naive UTC


def _moment(at: datetime, timezone: str) -> dict[str, str]:
    return {"at": _utc(at).isoformat(), "shown": for_people(_utc(at), timezone)}


def _stored(services: Services, project_id: str) -> dict[str, Any]:
    store = services.store
    # one pass: the earliest event (by its own time) and the latest arrival; outside the
    # reports' budget, so the settings page never fails on a project that outgrew it
    return store.query_dicts(
        "SELECT count() AS n, argMin(name, created_at) AS name, argMin(path, created_at) AS path,"
        f" min(created_at) AS first_at, max(received_at) AS last_at FROM {store.db}.events "
        "WHERE project_id = {p:String}",
        {"p": project_id},
        bounded=False,
    )[0]


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


async def _install(
    services: Services, project_id: str, timezone: str, accepted_today: int
) -> dict[str, Any]:
    stored = await asyncio.to_thread(_stored, services, project_id)
    accepted_ms = await services.counters.last_accepted_ms(project_id)
    arrivals = [_utc(stored["last_at"])] if stored["n"] else []
    if accepted_ms is not None:
        arrivals.append(datetime.fromtimestamp(accepted_ms / 1000, UTC))
    last = max(arrivals, default=None)
    first = None
    if stored["n"]:
        first = {"name": stored["name"], "path": stored["path"]}
        first.update(_moment(stored["first_at"], timezone))
    state = STORED if first else ARRIVING if accepted_today or last else WAITING
    return {
        "state": state,
        "accepted_today": accepted_today,
        "first": first,
        "last": _moment(last, timezone) if last else None,
        "timezone": timezone,
    }


async def install_check(services: Services, project_id: str, timezone: str) -> dict[str, Any]:
    await services.counters.flush()  # include this process's last seconds
    outcomes = await services.counters.read_day(_today(), project_id)
    return await _install(services, project_id, timezone, outcomes.get("accepted", 0))


async def project_health(services: Services, project_id: str, timezone: str) -> dict[str, Any]:
    await services.counters.flush()  # include this process's last seconds
    today = _today()
    outcomes = await services.counters.read_day(today, project_id)
    accepted = outcomes.pop("accepted", 0)
    profile_updates = sum(
        outcomes.pop(kind, 0) for kind in ("identify", "alias", "increment", "decrement")
    )
    buffer = services.supervisor.state  # read every half second; no extra round trip
    return {
        "day": today,
        "accepted": accepted,
        "profile_updates": profile_updates,
        "dropped": dict(sorted(outcomes.items())),
        "install": await _install(services, project_id, timezone, accepted),
        "buffer_depth": buffer.depth,
        "dead_letters": buffer.dead_letters,
    }
