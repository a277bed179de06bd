"""The store against chDB: query settings a server may lack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights import reports
from gatrix.insights.query import QueryParams, build_query


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


class _Statements(Store):
    """The store, keeping the statements a report runs so the test can EXPLAIN them."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.dsn, store.db, budget=store.budget)
        self.seen: list[tuple[str, dict[str, Any] | None]] = []

    def query_dicts(self, sql: str, parameters: Any = None, *args: Any, **kw: Any) -> list[dict]:
        self.seen.append((sql, parameters))
        return super().query_dicts(sql, parameters, *args, **kw)


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
    recording = _Statements(scratch_store)
    kpis = reports.metrics(recording, q)
    assert kpis["pageviews"] == 4000  # every 50th of the 200,000
    sql, params = recording.seen[-1]
    plan = "\n".join(r[0] for r in scratch_store.query_rows("EXPLAIN " + sql, params))
    # the matching page views are read from it (the sets of sessions holding one are
    # subqueries this plan does not expand)
    assert "ReadFromMergeTree (events_by_path)" in plan, plan
    # a substring cannot use the projection's order: the table is read as before
    q = build_query("proj", "UTC", QueryParams(range="7d", filters=["pages:contains:/p3"]), now)
    reports.metrics(recording, q)
    sql, params = recording.seen[-1]
    plan = "\n".join(r[0] for r in scratch_store.query_rows("EXPLAIN " + sql, params))
    assert "events_by_path" not in plan
