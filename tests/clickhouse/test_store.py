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
