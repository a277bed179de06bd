"""The store against chDB: query settings a server may lack."""

from __future__ import annotations

from gatrix.clickhouse.store import Store


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
