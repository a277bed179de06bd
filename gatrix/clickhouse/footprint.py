"""What one project keeps in ClickHouse, for its settings page: rows of events, sessions and
profiles, the oldest event, and about how many bytes.

ClickHouse counts bytes per part, and parts hold every project's rows, so a project's bytes
are estimated: each table's bytes on disk × the project's share of that table's rows. Every
count here is over the tables' leading `project_id` key, so it reads one column's marks and
granules of that project only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gatrix.clickhouse.store import PROJECT_TABLES, Store


@dataclass(frozen=True)
class Footprint:
    events: int
    sessions: int
    profiles: int
    approx_bytes: int
    oldest: datetime | None  # UTC


def footprint(store: Store, project_id: str) -> Footprint:
    db = store.db
    counts = ", ".join(
        f"(SELECT count() FROM {db}.{t} WHERE project_id = {{p:String}}) AS {t}"
        for t in PROJECT_TABLES
    )
    # sessions and profiles hold partial rows until merges: count ids, not rows
    row = store.query_dicts(
        f"SELECT {counts},"
        f" (SELECT uniq(session_id) FROM {db}.sessions WHERE project_id = {{p:String}})"
        " AS session_ids,"
        f" (SELECT uniq(profile_id) FROM {db}.profiles WHERE project_id = {{p:String}})"
        " AS profile_ids,"
        f" (SELECT min(created_at) FROM {db}.events WHERE project_id = {{p:String}}) AS oldest",
        {"p": project_id},
    )[0]
    names = [*PROJECT_TABLES, *(f"{t}_local" for t in PROJECT_TABLES)]
    parts = store.query_rows(
        "SELECT replaceRegexpOne(table, '_local$', ''), sum(rows), sum(bytes_on_disk)"
        " FROM system.parts WHERE database = {db:String} AND active"
        " AND table IN {tables:Array(String)} GROUP BY table",
        {"db": db, "tables": names},
    )
    estimate = 0.0
    for table, rows, size in parts:
        if rows:
            estimate += size * min(1.0, int(row[table]) / int(rows))
    events = int(row["events"])
    oldest = row["oldest"] if events else None
    return Footprint(
        events=events,
        sessions=int(row["session_ids"]),
        profiles=int(row["profile_ids"]),
        approx_bytes=round(estimate),
        oldest=oldest.replace(tzinfo=UTC) if oldest and oldest.tzinfo is None else oldest,
    )
