"""Raw events and profiles of one project, out as CSV, NDJSON or Parquet, in bounded pages.

ClickHouse writes the bytes itself (CSV, JSONEachRow; Arrow that pyarrow turns into Parquet
row groups). The export never asks for everything at once: the store serialises its calls
behind one lock (chDB allows one engine per process), so one statement streaming 10M rows
would hold back the flush job and every dashboard for its whole length. Instead the range is
cut into windows of whole hours holding at most PAGE_ROWS events each (one count per hour
first), a single busier hour into LIMIT pages, and each window is one short statement. Memory
stays at one page whatever the range (chDB's own streaming of CSV and JSONEachRow would save
that page, but it cannot stream Parquet or any format with a header and holds the engine's
handle for as long as the reader takes).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from gatrix.clickhouse.store import Store
from gatrix.insights.query import Query
from gatrix.insights.sql import base_params, events_where
from gatrix.portability.columns import EVENT_COLUMNS, KIND_TABLES

FORMATS = ("csv", "ndjson", "parquet")
KINDS = tuple(KIND_TABLES)
PAGE_ROWS = 50_000
CONTENT_TYPES = {
    "csv": "text/csv",  # the framework adds "; charset=utf-8" to text types
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_CH_FORMAT = {"csv": "CSV", "ndjson": "JSONEachRow", "parquet": "ArrowStream"}


class InvalidExport(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    rows: int


def check(fmt: str, kind: str) -> None:
    if fmt not in FORMATS:
        raise InvalidExport(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise InvalidExport(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")


def _select_list(columns: tuple[str, ...], fmt: str) -> str:
    # CSV has no map type: the properties travel as one JSON object per cell
    return ", ".join(
        "toJSONString(properties) AS properties" if c == "properties" and fmt == "csv" else c
        for c in columns
    )


def windows(store: Store, q: Query, page_rows: int = PAGE_ROWS) -> list[Window]:
    """Consecutive hours packed into windows of at most `page_rows` events (an hour with
    more is a window of its own, read in LIMIT pages)."""
    params = base_params(q)
    where = events_where(store.db, q, params)
    counts = store.query_rows(
        f"SELECT toStartOfHour(created_at) AS h, count() FROM {store.db}.events WHERE {where}"
        " GROUP BY h ORDER BY h",
        params.values,
    )
    out: list[Window] = []
    start: datetime | None = None
    end: datetime | None = None
    rows = 0
    for hour, count in counts:
        hour = hour if hour.tzinfo else hour.replace(tzinfo=UTC)
        if start is not None and end is not None and rows + count > page_rows:
            out.append(Window(start, end, rows))
            start, rows = None, 0
        if start is None:
            start = hour
        end, rows = hour + timedelta(hours=1), rows + count
    if start is not None and end is not None:
        out.append(Window(start, end, rows))
    return out


def _event_pages(store: Store, q: Query, fmt: str, page_rows: int) -> Iterator[bytes]:
    columns = _select_list(EVENT_COLUMNS, fmt)
    for window in windows(store, q, page_rows):
        params = base_params(q)
        where = events_where(store.db, q, params)
        params.values.update(w_start=window.start, w_end=window.end)
        sql = (
            f"SELECT {columns} FROM {store.db}.events WHERE {where}"
            " AND created_at >= {w_start:DateTime64(3, 'UTC')}"
            " AND created_at < {w_end:DateTime64(3, 'UTC')}"
            # the id breaks ties, so pages of a busy hour never overlap or skip
            " ORDER BY created_at, id"
        )
        for offset in range(0, max(window.rows, 1), page_rows):
            paged = sql if window.rows <= page_rows else f"{sql} LIMIT {page_rows} OFFSET {offset}"
            yield store.query_raw(paged, params.values, _CH_FORMAT[fmt])


# profiles are an append-only log of identify calls; links and counters are read merged
# (a link's first time, a counter's total), so a file holds one row per link or counter
_KEYED = {
    "profiles": "SELECT {columns} FROM {db}.profiles WHERE project_id = {{project:String}}"
    " ORDER BY profile_id, updated_at",
    "links": "SELECT source, target, kind, min(linked_at) AS linked_at FROM {db}.identity_links"
    " WHERE project_id = {{project:String}} GROUP BY source, target, kind"
    " ORDER BY source, target, kind",
    "counters": "SELECT profile_id, property, sum(value) AS value FROM {db}.profile_counters"
    " WHERE project_id = {{project:String}} GROUP BY profile_id, property"
    " HAVING value != 0 ORDER BY profile_id, property",
}


def _keyed_pages(store: Store, q: Query, fmt: str, page_rows: int, kind: str) -> Iterator[bytes]:
    """Every row of the project (no time range), in the table's key order, a page at a time."""
    columns = _select_list(tuple(KIND_TABLES[kind][1]), fmt)
    sql = _KEYED[kind].format(columns=columns, db=store.db)
    offset = 0
    while True:
        page = store.query_raw(
            f"{sql} LIMIT {page_rows} OFFSET {offset}",
            {"project": q.project_id},
            _CH_FORMAT[fmt],
        )
        rows = _count_rows(page, fmt)
        if rows:
            yield page
        if rows < page_rows:
            return
        offset += page_rows


def _count_rows(page: bytes, fmt: str) -> int:
    if fmt == "parquet":
        return sum(b.num_rows for b in pa.ipc.open_stream(page)) if page else 0
    # CSV cells may hold quoted newlines: count records by what ClickHouse terminates them with
    return page.count(b"\n") if fmt == "ndjson" else _csv_records(page)


def _csv_records(page: bytes) -> int:
    records, quoted = 0, False
    for part in page.split(b'"'):
        if not quoted:
            records += part.count(b"\n")
        quoted = not quoted
    return records


def export(
    store: Store, q: Query, fmt: str, kind: str = "events", page_rows: int = PAGE_ROWS
) -> Iterator[bytes]:
    """The file's bytes, page by page. Blocking: iterate it off the event loop."""
    check(fmt, kind)
    columns = tuple(KIND_TABLES[kind][1])
    if kind == "events":
        pages = _event_pages(store, q, fmt, page_rows)
    else:
        pages = _keyed_pages(store, q, fmt, page_rows, kind)
    if fmt == "csv":
        yield (",".join(columns) + "\n").encode()
        yield from pages
    elif fmt == "ndjson":
        yield from pages
    else:
        yield from _parquet(store, pages, kind)


class _Drain(io.RawIOBase):
    """Where the Parquet writer puts its bytes, handed on after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _parquet(store: Store, pages: Iterator[bytes], kind: str) -> Iterator[bytes]:
    drain = _Drain()
    writer: pq.ParquetWriter | None = None
    for page in pages:
        if not page:
            continue
        table = pa.ipc.open_stream(page).read_all()
        if writer is None:
            writer = pq.ParquetWriter(drain, table.schema, compression="zstd")
        writer.write_table(table)  # one row group per page
        yield drain.take()
    if writer is None:  # nothing in range: still a valid file, with the columns
        table_name, types = KIND_TABLES[kind]
        select = _select_list(tuple(types), "parquet")
        empty = store.query_raw(
            f"SELECT {select} FROM {store.db}.{table_name} LIMIT 0", None, "ArrowStream"
        )
        schema = pa.ipc.open_stream(empty).schema if empty else None
        if schema is None:
            return
        writer = pq.ParquetWriter(drain, schema, compression="zstd")
    writer.close()
    yield drain.take()


def filename(project_id: str, kind: str, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", project_id)[:64]  # it goes into a header
    return f"gatrix-{safe}-{kind}.{fmt}"
