"""`events(store, project, [...])`: hand-built events written straight into ClickHouse (the
rollups fill through their materialized views), for insights tests with known answers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time

DEFAULTS: dict[str, Any] = {
    "name": "screen_view",
    "device_id": "v1",
    "profile_id": "",
    "session_id": "s1",
    "origin": "https://site.test",
    "path": "/",
    "query": "",
    "title": "",
    "referrer": "",
    "referrer_name": "",
    "referrer_type": "",
    "utm_source": "",
    "utm_medium": "",
    "utm_campaign": "",
    "utm_term": "",
    "utm_content": "",
    "click_id_type": "",
    "click_id": "",
    "country": "",
    "region": "",
    "city": "",
    "browser": "Chrome",
    "browser_version": "131.0",
    "os": "Windows",
    "os_version": "10",
    "device": "desktop",
    "brand": "",
    "model": "",
    "screen": "",
    "language": "",
    "duration": 0,
    "revenue": 0.0,
    "properties": {},
    "sdk_name": "test",
    "sdk_version": "1",
}


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


def events(store: Store, project_id: str, specs: list[dict[str, Any]]) -> None:
    """Each spec needs `at` (aware datetime); everything else defaults. Sessions start at the
    earliest `at` (or `session_start`, for a session begun in an earlier call) of their
    session id, as the ingest path would have recorded."""
    starts: dict[str, int] = {}
    for spec in specs:
        sid = spec.get("session_id", DEFAULTS["session_id"])
        first = min(_ms(spec["at"]), _ms(spec.get("session_start", spec["at"])))
        starts[sid] = min(starts.get(sid, 2**62), first)
    lines = []
    for spec in specs:
        row = {**DEFAULTS, **{k: v for k, v in spec.items() if k not in ("at", "session_start")}}
        ms = _ms(spec["at"])
        row.update(
            id=str(uuid.uuid4()),
            project_id=project_id,
            created_at=ch_time(ms),
            received_at=ch_time(ms),
            session_start=ch_time(starts[row["session_id"]]),
        )
        lines.append(json.dumps(row).encode())
    store.insert_json_rows("events", lines, f"factory-{uuid.uuid4()}")
