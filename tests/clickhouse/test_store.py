"""The store against chDB: query settings a server may lack."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from gatrix.clickhouse.store import MIGRATIONS_DIR, Store
from gatrix.insights import reports
from gatrix.insights.query import QueryParams, build_query
from tools.bench.insights import RecordingStore


def test_settings_the_server_knows_apply_and_the_others_are_left_out(store: Store) -> None:
    rows = store.query_dicts(
        "SELECT getSetting('query_plan_join_swap_table') AS swap",
        settings={"query_plan_join_swap_table": "false", "gatrix_no_such_setting": 1},
    )
    assert rows == [{"swap": False}]  # a bool once set, "auto" by default
    assert store.query_dicts("SELECT getSetting('query_plan_join_swap_table') AS swap") == [
        {"swap": "auto"}
    ]


def test_rollups_with_visitor_sketches_have_small_granules(store: Store) -> None:
    # a row of these holds a whole hour's or day's visitor sketch: reading today's few rows
    # must not read a 10 MiB granule of other hours (README "Storage")
    rows = store.query_rows(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} "
        "AND name IN ('hourly', 'session_hourly', 'total_daily', 'session_daily')",
        {"db": store.db},
    )
    assert len(rows) == 4
    for name, engine in rows:
        assert "index_granularity_bytes = 1048576" in engine, name


def test_page_filters_read_the_by_path_projection(scratch_store: Store) -> None:
    # 200k page views over 50 paths: without the projection (migration 0014) every path of
    # the range is read and compared; with it, a page filter reads one key range of it
    scratch_store.command(
        f"INSERT INTO {scratch_store.db}.events (project_id, name, path, session_id, "
        "session_start, created_at, device_id) SELECT 'proj', 'screen_view', "
        "concat('/p', toString(number % 50)), toString(intDiv(number, 5)), "
        "now64() - intDiv(number, 5) * 10, now64() - number, toString(number % 900) "
        "FROM numbers(200000)"
    )
    now = datetime.now(UTC)
    q = build_query("proj", "UTC", QueryParams(range="7d", filters=["pages:is:/p3"]), now)
    recording = RecordingStore(scratch_store)  # keeps the statements, to EXPLAIN them
    kpis = reports.metrics(recording, q)
    assert kpis["pageviews"] == 4000  # every 50th of the 200,000
    sql, params = recording.statements[-1]
    plan = "\n".join(r[0] for r in scratch_store.query_rows("EXPLAIN " + sql, params))
    # the matching page views are read from it (the sets of sessions holding one are
    # subqueries this plan does not expand)
    assert "ReadFromMergeTree (events_by_path)" in plan, plan
    # a substring cannot use the projection's order: the table is read as before
    q = build_query("proj", "UTC", QueryParams(range="7d", filters=["pages:contains:/p3"]), now)
    reports.metrics(recording, q)
    sql, params = recording.statements[-1]
    plan = "\n".join(r[0] for r in scratch_store.query_rows("EXPLAIN " + sql, params))
    assert "events_by_path" not in plan


def _mutations_done(store: Store) -> None:
    # mutations run in the background, as a server goes on serving meanwhile
    for _ in range(400):
        running = store.query_rows(
            "SELECT countIf(NOT is_done) FROM system.mutations WHERE database = {db:String}",
            {"db": store.db},
        )[0][0]
        if not running:
            return
        time.sleep(0.05)
    raise AssertionError("mutations still running")


def test_the_projection_never_brings_erased_rows_back(chdb_dsn: str, tmp_path: Path) -> None:
    # A database made before migration 0014: 100k page views over 7 paths and 30 devices,
    # and device 3 erased (a lightweight DELETE: its rows are only marked). The upgrade builds
    # the projection of the stored parts, and must not copy the marked rows into it; a person
    # erased after it must be gone from what page filters read too.
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 14:
            shutil.copy(path, older / path.name)
    store = Store(chdb_dsn, f"t_{uuid.uuid4().hex[:12]}")
    try:
        store.migrate(older)
        db = store.db
        store.command(
            f"INSERT INTO {db}.events (project_id, name, path, session_id, created_at, "
            "device_id) SELECT 'proj', 'screen_view', concat('/p', toString(number % 7)), "
            "toString(number), now64() - number, toString(number % 30) FROM numbers(100000)"
        )
        store.command(f"DELETE FROM {db}.events WHERE device_id = '3'")
        assert store.migrate() == ["0014_page_projection"]
        _mutations_done(store)
        projected = store.query_rows(
            "SELECT sum(rows) FROM system.projection_parts WHERE database = {db:String} "
            "AND table = 'events' AND name = 'events_by_path' AND active",
            {"db": db},
        )[0][0]
        assert projected == 100_000 - 3334  # every row but device 3's
        page = f"SELECT count() FROM {db}.events WHERE project_id = 'proj' AND path = '/p3'"
        assert "events_by_path" in "\n".join(r[0] for r in store.query_rows(f"EXPLAIN {page}"))
        # /p3: the numbers ≡ 3 (mod 7), 14,286 of them; of those, 477 were device 3's
        assert store.query_rows(page)[0][0] == 14_286 - 477
        assert store.query_rows(f"{page} AND device_id = '3'")[0][0] == 0
        # erased after the upgrade: device 10 (477 of the /p3 views)
        store.command(f"DELETE FROM {db}.events WHERE device_id = '10'")
        assert store.query_rows(page)[0][0] == 14_286 - 477 - 477
        assert store.query_rows(f"{page} AND device_id = '10'")[0][0] == 0
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.db}")
