"""Every report runs inside a query budget; past it, a clear answer instead of a fault."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import QueryBudget, QueryTooHeavy, Store
from gatrix.insights import reports
from gatrix.insights.live import live
from gatrix.insights.query import QueryParams, build_query
from gatrix.meta.accounts import create_share_link
from tests.factory import events
from tests.insights.test_api import new_api

NOW = datetime(2026, 3, 8, 12, tzinfo=UTC)


def seeded(store: Store) -> str:
    project = f"budget-{uuid.uuid4().hex[:8]}"
    events(
        store,
        project,
        [
            {"at": NOW - timedelta(days=d, minutes=m), "device_id": f"d{m}", "session_id": f"s{m}"}
            for d in range(3)
            for m in range(5)
        ],
    )
    return project


def week(project: str) -> Any:
    return build_query(project, "UTC", QueryParams(range="7d"), NOW)


def tight(store: Store, **limits: Any) -> Store:
    # the same engine and database, read under another budget
    return Store(store.dsn, store.db, budget=QueryBudget(**limits))


def test_a_report_past_the_rows_budget_is_too_heavy(store: Store) -> None:
    project = seeded(store)
    assert reports.metrics(store, week(project))["pageviews"] == 15
    with pytest.raises(QueryTooHeavy) as caught:
        reports.metrics(tight(store, rows=3), week(project))
    assert caught.value.limit == "rows"
    assert "narrow the date range" in caught.value.advice


def test_a_read_past_the_time_budget_is_stopped(store: Store) -> None:
    slow = "SELECT sum(sleepEachRow(0.05)) FROM numbers(40) SETTINGS max_block_size = 1"
    with pytest.raises(QueryTooHeavy) as caught:
        tight(store, seconds=0.2).query_rows(slow)
    assert caught.value.limit == "time"


def test_a_read_past_the_memory_budget_is_stopped(store: Store) -> None:
    # measured in embedded mode too: the engine enforces max_memory_usage (BENCHMARKS.md)
    keys = "SELECT count() FROM (SELECT number % 300000 AS k, groupArray(number) FROM "
    with pytest.raises(QueryTooHeavy) as caught:
        tight(store, memory_mb=1).query_rows(keys + "numbers(1000000) GROUP BY k)")
    assert caught.value.limit == "memory"


def test_unbounded_reads_and_a_statements_own_settings(store: Store) -> None:
    small = tight(store, rows=3)
    many = "SELECT count() FROM numbers(1000)"
    assert small.query_rows(many, bounded=False) == [(1000,)]
    # a statement's own setting wins over the budget's
    assert small.query_dicts(many, settings={"max_rows_to_read": 0}) == [{"count()": 1000}]
    with pytest.raises(QueryTooHeavy):
        small.query_rows(many)


def test_live_reads_only_the_last_hour(scratch_store: Store) -> None:
    # a database of its own: other tests' recent rows would share live_events' granules
    store = scratch_store
    now = datetime.now(UTC).replace(microsecond=0)
    project = f"live-{uuid.uuid4().hex[:8]}"
    old = [
        {"at": now - timedelta(days=2, minutes=m), "device_id": f"o{m}", "session_id": f"o{m}"}
        for m in range(50)
    ]
    recent = [
        {"at": now - timedelta(minutes=m), "device_id": f"r{m}", "session_id": f"r{m}"}
        for m in (1, 2, 20)
    ]
    events(store, project, old + recent)
    copied = store.query_rows(
        f"SELECT count() FROM {store.db}.live_events WHERE project_id = {{p:String}}",
        {"p": project},
    )
    assert copied == [(3,)]
    # the two days of history are not read: a budget of the recent rows is enough
    shown = live(tight(store, rows=3), project, now)
    assert shown["visitors"] == 2
    assert sum(m["pageviews"] for m in shown["per_minute"]) == 3


def recent(store: Store, project: str) -> None:
    now = datetime.now(UTC)
    # two events in the last minutes (live reads them), the others on the days before
    days = [now - timedelta(days=d, minutes=m) for d in range(4) for m in (1, 2)]
    events(store, project, [{"at": t, "device_id": "a", "session_id": f"{t}"} for t in days])


@pytest.fixture
def tight_server(server: Any) -> Iterator[Any]:
    store = server.services.store
    kept = store.budget
    store.budget = QueryBudget(rows=1)
    yield server
    store.budget = kept


def test_the_api_answers_too_heavy_not_a_fault(
    tight_server: Any, http: httpx.Client, store: Store
) -> None:
    api = new_api(tight_server, http)
    recent(store, api.project)
    asks: list[tuple[str, dict[str, Any]]] = [
        ("metrics", {}),
        ("timeseries", {}),
        ("breakdown/pages", {}),
        # the product endpoints have no handler of their own for it: the fallback answers
        ("funnel", {"step": ["page:/", "page:/a"]}),
        ("retention", {"interval": "day"}),
    ]
    for path, params in asks:
        status, body = api.status(path, range="7d", **params)
        assert status == 422, (path, body)
        assert body["error"] == "query_too_heavy"
        assert "narrow the date range" in body["detail"]


def test_the_dashboard_says_too_heavy_in_place(
    tight_server: Any, http: httpx.Client, store: Store
) -> None:
    api = new_api(tight_server, http)
    recent(store, api.project)
    token = create_share_link(tight_server.services.engine, api.project)
    page = http.get(f"/share/{token}", params={"range": "7d"})
    assert page.status_code == 200
    assert "Too heavy for this server" in page.text
    assert 'id="range"' in page.text  # the controls stay, to narrow the range
    for name, target in (("kpis", "kpis"), ("panel", "panel-pages"), ("realtime", "realtime")):
        reply = http.get(
            f"/share/{token}/fragments/{name}", params={"range": "7d", "panel": "pages"}
        )
        assert reply.status_code == 200
        assert f'id="{target}"' in reply.text
        assert "Too heavy for this server" in reply.text


def test_the_budget_settings_reach_the_servers_store(tmp_path: Any) -> None:
    from gatrix.services import open_store
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path, query_max_seconds=7, query_max_rows=5, query_max_memory_mb=64
    )
    budget = open_store(settings).budget
    assert (budget.seconds, budget.rows, budget.memory_mb) == (7, 5, 64)
