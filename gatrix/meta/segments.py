"""A project's saved segments: named sets of dashboard filters, kept as the URL query string
of those filters (`filter=countries%3Ais%3ADE&filter=…`) in the `saved_view` table (kind
`segment`). Applying one is writing its filters into the dashboard's URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gatrix.insights.filters import InvalidFilter, parse_filter
from gatrix.meta.models import SavedView, lock_project, within_cap

KIND = "segment"
MAX_SEGMENTS = 50
MAX_NAME = 100
MAX_QUERY_BYTES = 4096
# the dashboard's own limits on a view's filters (gatrix.web.view), so a segment always opens
MAX_FILTERS = 20
MAX_FILTER_CHARS = 500


class InvalidSegment(ValueError):
    """A segment we refuse; the API answers 400 invalid_segment with this message."""


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    filters: tuple[str, ...]
    created_by: str

    @property
    def query(self) -> str:
        return urlencode([("filter", f) for f in self.filters])

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "query": self.query,
            "filters": list(self.filters),
            "created_by": self.created_by,
        }


def _segment(row: SavedView) -> Segment:
    filters = tuple(v for _, v in parse_qsl(row.query, keep_blank_values=True))
    return Segment(int(row.id or 0), row.name, filters, row.created_by)


def parse_name(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidSegment("name must be a string")
    name = value.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidSegment(f"name is 1 to {MAX_NAME} printable characters")
    return name


def parse_filters(filters: Any) -> tuple[str, ...]:
    """Filters as the dashboard takes them: each one `dimension:operator:value` over a
    dimension it knows, at most MAX_FILTERS of at most MAX_FILTER_CHARS characters."""
    if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
        raise InvalidSegment("filters must be a list of strings")
    kept = tuple(dict.fromkeys(f for f in filters if f))  # repeated filters mean one
    if not kept:
        raise InvalidSegment("a segment needs at least one filter")
    if len(kept) > MAX_FILTERS:
        raise InvalidSegment(f"a segment has at most {MAX_FILTERS} filters")
    for text in kept:
        if len(text) > MAX_FILTER_CHARS or "\x00" in text:
            raise InvalidSegment(f"a filter is at most {MAX_FILTER_CHARS} characters")
        try:
            parse_filter(text)
        except InvalidFilter as exc:
            raise InvalidSegment(str(exc)) from None
    return kept


def parse_query(query: Any) -> tuple[str, ...]:
    """A URL query string that holds only `filter` parameters (the dashboard's own URL keys
    for filters); anything else in it (a range, a tab) is refused, not silently dropped."""
    if not isinstance(query, str):
        raise InvalidSegment("query must be a string")
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidSegment(f"query is at most {MAX_QUERY_BYTES} bytes")
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    unknown = sorted({k for k, _ in pairs if k != "filter"})
    if unknown:
        raise InvalidSegment(f"a segment holds filters only (filter=…), not {unknown[0][:40]!r}")
    return parse_filters([v for _, v in pairs])


def parse_segment(body: Any) -> tuple[str, tuple[str, ...]]:
    """`{"name", "query": "filter=…&filter=…"}` or `{"name", "filters": [...]}`."""
    if not isinstance(body, dict):
        raise InvalidSegment('send a JSON object: {"name", "query"} or {"name", "filters"}')
    unknown = set(body) - {"name", "query", "filters"}
    if unknown:
        raise InvalidSegment(f"unknown field {sorted(unknown)[0][:40]!r}")
    if ("query" in body) == ("filters" in body):
        raise InvalidSegment("give exactly one of query or filters")
    name = parse_name(body.get("name"))
    if "query" in body:
        return name, parse_query(body["query"])
    return name, parse_filters(body["filters"])


def list_segments(engine: Engine, project_id: str) -> list[Segment]:
    with Session(engine) as db:
        rows = db.exec(
            select(SavedView)
            .where(SavedView.project_id == project_id, SavedView.kind == KIND)
            .order_by(col(SavedView.name), col(SavedView.id))
        ).all()
        return [_segment(row) for row in rows]


def create_segment(engine: Engine, project_id: str, body: Any, actor: str = "") -> Segment:
    name, filters = parse_segment(body)
    query = urlencode([("filter", f) for f in filters])
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidSegment(f"query is at most {MAX_QUERY_BYTES} bytes")
    with Session(engine) as db:
        lock_project(db, project_id)
        count = db.exec(
            select(func.count())
            .select_from(SavedView)
            .where(SavedView.project_id == project_id, SavedView.kind == KIND)
        ).one()
        if count >= MAX_SEGMENTS:
            raise InvalidSegment(f"a project has at most {MAX_SEGMENTS} segments")
        row = SavedView(
            project_id=project_id, kind=KIND, name=name, query=query, created_by=actor[:255]
        )
        db.add(row)
        db.commit()
        db.refresh(row)
        mine = (col(SavedView.project_id) == project_id, col(SavedView.kind) == KIND)
        if not within_cap(db, row, MAX_SEGMENTS, *mine):
            raise InvalidSegment(f"a project has at most {MAX_SEGMENTS} segments")
        return _segment(row)


def delete_segment(engine: Engine, project_id: str, segment_id: int) -> bool:
    with Session(engine) as db:
        result = db.execute(
            delete(SavedView).where(
                col(SavedView.id) == segment_id,
                col(SavedView.project_id) == project_id,
                col(SavedView.kind) == KIND,
            )
        )
        db.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
