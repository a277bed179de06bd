"""Export → import into a fresh project gives the same numbers; imports are idempotent and
resumable. Real chDB (the session's), real worker processes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.insights import reports
from gatrix.insights.query import QueryParams, build_query
from gatrix.portability.export import export
from gatrix.portability.importer import run_import

from ..factory import events

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DIMENSIONS = ("pages", "entry_pages", "exit_pages", "referrers", "countries", "browsers", "events")


def _specs() -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for v in range(12):
        start = NOW - timedelta(days=v % 5, hours=v)
        for k in range(1 + v % 4):
            specs.append(
                {
                    "at": start + timedelta(minutes=3 * k),
                    "device_id": f"v{v}",
                    "session_id": f"s{v}",
                    "path": f"/p{k}",
                    "country": ["KR", "US", "DE"][v % 3],
                    "browser": ["Chrome", "Firefox"][v % 2],
                    "referrer_name": "Google" if k == 0 and v % 2 else "",
                    "referrer_type": "search" if k == 0 and v % 2 else "",
                    "title": 'a "quoted", title\nwith a newline' if k == 1 else "",
                }
            )
        specs.append(
            {
                "at": start + timedelta(minutes=1),
                "device_id": f"v{v}",
                "session_id": f"s{v}",
                "name": "purchase" if v % 3 else "=signup",
                "revenue": 9.5 if v % 3 else 0.0,
                "properties": {"plan": ["free", "pro"][v % 2], "note": "x,y"},
            }
        )
    return specs


def _numbers(store: Store, project: str) -> dict[str, Any]:
    q = build_query(project, "UTC", QueryParams(range="30d"), NOW)
    out: dict[str, Any] = {"metrics": reports.metrics(store, q)}
    out["metrics"].pop("range")
    for dim in DIMENSIONS:
        out[dim] = reports.breakdown(store, q, dim, limit=50)["rows"]
    out["property"] = reports.property_breakdown(store, q, "purchase", "plan")["rows"]
    return out


def _count(store: Store, project: str) -> tuple[int, int]:
    rows = store.query_rows(
        "SELECT count(), uniqExact(id) FROM gatrix.events WHERE project_id = {p:String}",
        {"p": project},
    )
    return rows[0][0], rows[0][1]


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet"])
def test_export_then_import_gives_the_same_numbers(store: Store, tmp_path: Path, fmt: str) -> None:
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    path = tmp_path / f"export.{fmt}"
    # tiny pages: the export's paging is exercised, not just one statement
    path.write_bytes(b"".join(export(store, q, fmt, page_rows=7)))
    report = run_import(store, tmp_path / "state", target, "gatrix", [path], workers=2)
    assert report.complete and report.events == len(_specs()) and not report.dropped
    assert _numbers(store, target) == _numbers(store, source)
    assert _count(store, target) == (len(_specs()), len(_specs()))


def test_parquet_export_holds_every_event(store: Store, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    source = f"pq-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    path = tmp_path / "export.parquet"
    path.write_bytes(b"".join(export(store, q, "parquet", page_rows=5)))
    table = pq.read_table(path)
    assert table.num_rows == len(_specs())
    assert pq.ParquetFile(path).num_row_groups > 1
    assert sorted(table.column("name").to_pylist()) == sorted(
        s.get("name", "screen_view") for s in _specs()
    )


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_importing_twice_stores_nothing_twice(store: Store, tmp_path: Path, fmt: str) -> None:
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    path = tmp_path / f"export.{fmt}"
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    path.write_bytes(b"".join(export(store, q, fmt, page_rows=9)))
    first = run_import(store, tmp_path / "state", target, "gatrix", [path], workers=1)
    again = run_import(store, tmp_path / "state", target, "gatrix", [path], workers=1)
    assert again.already_done and again.events == first.events
    # even with the checkpoint gone, each chunk's deduplication token keeps it single
    for checkpoint in (tmp_path / "state").iterdir():
        checkpoint.unlink()
    run_import(store, tmp_path / "state", target, "gatrix", [path], workers=1)
    assert _count(store, target) == (len(_specs()), len(_specs()))


def test_an_interrupted_import_resumes_without_duplicates(store: Store, tmp_path: Path) -> None:
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    path = tmp_path / "export.ndjson"
    path.write_bytes(
        b"".join(export(store, build_query(source, "UTC", QueryParams(range="all"), NOW), "ndjson"))
    )
    # chunks of ~2 KB, each its own insert: several of them, and the stop comes after the first
    partial = run_import(
        store,
        tmp_path / "state",
        target,
        "gatrix",
        [path],
        stop_after=1,
        chunk_bytes=2048,
        block_events=1,
    )
    assert not partial.complete and 0 < partial.events < len(_specs())
    assert _count(store, target)[0] == partial.events
    done = run_import(store, tmp_path / "state", target, "gatrix", [path], chunk_bytes=2048)
    assert done.complete and done.events == len(_specs())
    assert _count(store, target) == (len(_specs()), len(_specs()))
    assert _numbers(store, target) == _numbers(store, source)


def test_a_block_stored_but_not_marked_is_stored_once(store: Store, tmp_path: Path) -> None:
    """A crash after a multi-chunk block's insert and before its checkpoint: the retry cuts
    the same block and its token keeps the rows single."""
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    path = tmp_path / "export.ndjson"
    path.write_bytes(
        b"".join(export(store, build_query(source, "UTC", QueryParams(range="all"), NOW), "ndjson"))
    )
    state = tmp_path / "state"
    args = (store, state, target, "gatrix", [path])
    first = run_import(*args, chunk_bytes=2048, block_events=5, stop_after=1)
    assert 0 < first.events < len(_specs())
    # forget the block, as if the process died before the checkpoint's and the ledger's write
    for written in state.iterdir():
        written.unlink()
    done = run_import(*args, chunk_bytes=2048, block_events=5)
    assert done.complete and done.events == len(_specs())
    assert _count(store, target) == (len(_specs()), len(_specs()))


def test_a_profiles_parquet_export_round_trips(store: Store, tmp_path: Path) -> None:
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    rows = [
        {
            "project_id": source,
            "profile_id": f"user-{n}",
            "email": f"u{n}@example.com",
            "properties": {"plan": "pro" if n % 2 else "free"},
            "updated_at": (NOW - timedelta(days=n)).strftime("%Y-%m-%d %H:%M:%S"),
        }
        for n in range(5)
    ]
    store.insert_json_rows("profiles", [json.dumps(r).encode() for r in rows], uuid.uuid4().hex)
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    path = tmp_path / "profiles.parquet"
    path.write_bytes(b"".join(export(store, q, "parquet", kind="profiles", page_rows=2)))
    report = run_import(store, tmp_path / "state", target, "gatrix", [path], workers=1)
    assert (report.events, report.profiles, report.dropped) == (0, 5, {})

    def stored(project: str) -> list[list[Any]]:
        return [
            list(r)
            for r in store.query_rows(
                "SELECT profile_id, email, properties['plan'], updated_at FROM gatrix.profiles "
                "WHERE project_id = {p:String} ORDER BY profile_id",
                {"p": project},
            )
        ]

    assert stored(target) == stored(source) and len(stored(target)) == 5


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet"])
def test_links_and_counters_round_trip_so_visitors_stay_resolved(
    store: Store, tmp_path: Path, fmt: str
) -> None:
    # identify calls that no event repeats (device v0 → ada, v1 → ada) and an alias: only the
    # links say that three devices are one person, so without them the import would count 3
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    at = (NOW - timedelta(days=6)).strftime("%Y-%m-%d %H:%M:%S")
    links = [("v0", "ada", "device"), ("v1", "ada", "device"), ("v2", "lovelace", "device")]
    links.append(("lovelace", "ada", "alias"))
    store.insert_json_rows(
        "identity_links",
        [
            json.dumps(
                {"project_id": source, "source": s, "target": t, "kind": k, "linked_at": at}
            ).encode()
            for s, t, k in links
        ],
        uuid.uuid4().hex,
    )
    counters = [("ada", "logins", 2.0), ("ada", "logins", 1.0), ("bo", "credits", -4.5)]
    store.insert_json_rows(
        "profile_counters",
        [
            json.dumps({"project_id": source, "profile_id": p, "property": k, "value": v}).encode()
            for p, k, v in counters
        ],
        uuid.uuid4().hex,
    )
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    files = []
    for kind in ("events", "links", "counters"):
        path = tmp_path / f"{kind}.{fmt}"
        path.write_bytes(b"".join(export(store, q, fmt, kind=kind, page_rows=2)))
        files.append(path)
    report = run_import(store, tmp_path / "state", target, "gatrix", files, workers=2)
    assert report.complete and not report.dropped
    assert report.others == {"identity_links": 4, "profile_counters": 2}
    assert _numbers(store, target) == _numbers(store, source)
    assert _numbers(store, target)["metrics"]["visitors"] == 10  # 12 devices, 3 are one person
    totals = store.query_rows(
        "SELECT profile_id, property, sum(value) FROM gatrix.profile_counters "
        "WHERE project_id = {p:String} GROUP BY profile_id, property ORDER BY profile_id",
        {"p": target},
    )
    assert [list(r) for r in totals] == [["ada", "logins", 3.0], ["bo", "credits", -4.5]]


def test_a_file_imported_before_is_not_stored_again_in_another_list_of_files(
    store: Store, tmp_path: Path
) -> None:
    """The same file in another order, alone, twice in one list, or beside a new file: only
    what no import stored before goes in (a finished import's id alone did not see this)."""
    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    store.insert_json_rows(
        "profile_counters",
        [
            json.dumps(
                {"project_id": source, "profile_id": "ada", "property": "logins", "value": 3.0}
            ).encode()
        ],
        uuid.uuid4().hex,
    )
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    evs, counters = tmp_path / "events.ndjson", tmp_path / "counters.ndjson"
    evs.write_bytes(b"".join(export(store, q, "ndjson", page_rows=5)))
    counters.write_bytes(b"".join(export(store, q, "ndjson", kind="counters")))
    state = tmp_path / "state"

    def again(*paths: Path) -> Any:
        return run_import(store, state, target, "gatrix", list(paths), workers=1)

    first = again(evs, counters)
    assert first.complete and first.events == len(_specs()) and not first.stored_before
    for paths in ((counters, evs), (evs,), (counters,)):
        report = again(*paths)
        assert not report.already_done  # another list of files: another import
        assert report.events == 0 and report.stored_before == report.chunks > 0
    assert again(evs, evs).events == 0  # the same files as (evs,): that import is done
    assert _count(store, target) == (len(_specs()), len(_specs()))
    total = store.query_rows(
        "SELECT sum(value) FROM gatrix.profile_counters WHERE project_id = {p:String}",
        {"p": target},
    )
    assert total[0][0] == 3.0
    assert _numbers(store, target) == _numbers(store, source)
    # a new file beside the old one: only the new one's events go in
    more = tmp_path / "more.ndjson"
    other = f"other-{uuid.uuid4().hex[:8]}"
    events(store, other, _specs()[:5])
    more.write_bytes(
        b"".join(export(store, build_query(other, "UTC", QueryParams(range="all"), NOW), "ndjson"))
    )
    mixed = again(evs, more)
    assert mixed.events == 5 and mixed.stored_before == mixed.chunks - 1
    assert _count(store, target) == (len(_specs()) + 5, len(_specs()) + 5)
    # one file given twice in one import is stored once
    fresh = f"dst-{uuid.uuid4().hex[:8]}"
    twice = run_import(store, state, fresh, "gatrix", [evs, evs], workers=1)
    assert twice.events == len(_specs()) and twice.stored_before == twice.chunks // 2
    assert _count(store, fresh) == (len(_specs()), len(_specs()))


def test_two_imports_of_one_file_side_by_side_store_it_once(store: Store, tmp_path: Path) -> None:
    """Started together (two lists of files, so two imports), neither finds the file in the
    ledger yet: the second waits for the first and then finds it stored."""
    import io
    import threading

    source, target = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    events(store, source, _specs())
    path = tmp_path / "export.ndjson"
    q = build_query(source, "UTC", QueryParams(range="all"), NOW)
    path.write_bytes(b"".join(export(store, q, "ndjson")))
    other = f"other-{uuid.uuid4().hex[:8]}"
    events(store, other, _specs()[:5])
    more = tmp_path / "more.ndjson"
    more.write_bytes(
        b"".join(export(store, build_query(other, "UTC", QueryParams(range="all"), NOW), "ndjson"))
    )
    state, said = tmp_path / "state", io.StringIO()
    reports: list[Any] = []
    start = threading.Barrier(2)

    def one(paths: list[Path]) -> None:
        start.wait()
        reports.append(run_import(store, state, target, "gatrix", paths, workers=1, out=said))

    threads = [threading.Thread(target=one, args=(p,)) for p in ([path], [more, path])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    total = len(_specs()) + 5
    assert not any(r.already_done for r in reports)
    assert sum(r.events for r in reports) == total  # whichever came first
    assert "another import into this project is running: waiting for it" in said.getvalue()
    assert _count(store, target) == (total, total)
