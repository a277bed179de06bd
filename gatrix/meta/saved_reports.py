"""A project's saved reports (funnels, retention grids, paths) in the metadata database:
listed, added (validated) and deleted. A saved report is a name and the URL query string of
the report page, so opening one is opening a URL; the page re-reads and re-checks the query
like any other address, so a stored query is never trusted more than a typed one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gatrix.meta.models import SavedView

REPORT_KINDS = ("funnel", "retention", "paths")
MAX_NAME = 100
MAX_QUERY_BYTES = 4096
MAX_PER_KIND = 50


class InvalidSavedReport(ValueError):
    """A saved report we refuse; the page shows this message."""


@dataclass(frozen=True)
class SavedReport:
    id: int
    kind: str
    name: str
    query: str
    created_by: str


def _report(row: SavedView) -> SavedReport:
    return SavedReport(int(row.id or 0), row.kind, row.name, row.query, row.created_by)


def _kind(kind: str) -> str:
    if kind not in REPORT_KINDS:
        raise InvalidSavedReport(f"a saved report is one of {', '.join(REPORT_KINDS)}")
    return kind


def clean_name(name: str) -> str:
    name = " ".join(name.split())  # tabs and runs of spaces read as one space in a menu
    if not name:
        raise InvalidSavedReport("give the report a name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidSavedReport(f"a name is at most {MAX_NAME} printable characters")
    return name


def clean_query(query: str) -> str:
    query = query.lstrip("?")
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidSavedReport(f"the report's address is longer than {MAX_QUERY_BYTES} bytes")
    if not query.isprintable() or " " in query:
        # a query string as browsers send it is percent-encoded: raw spaces or control
        # characters mean it did not come from a report page
        raise InvalidSavedReport("the report's address is not a URL query string")
    return query


def list_reports(engine: Engine, project_id: str, kind: str) -> list[SavedReport]:
    with Session(engine) as db:
        rows = db.exec(
            select(SavedView)
            .where(SavedView.project_id == project_id, SavedView.kind == _kind(kind))
            .order_by(col(SavedView.name), col(SavedView.id))
        ).all()
        return [_report(r) for r in rows]


def add_report(
    engine: Engine, project_id: str, kind: str, name: str, query: str, created_by: str
) -> SavedReport:
    row = SavedView(
        project_id=project_id,
        kind=_kind(kind),
        name=clean_name(name),
        query=clean_query(query),
        created_by=created_by[:255],
    )
    with Session(engine) as db:
        count = db.exec(
            select(func.count())
            .select_from(SavedView)
            .where(SavedView.project_id == project_id, SavedView.kind == kind)
        ).one()
        if count >= MAX_PER_KIND:
            raise InvalidSavedReport(
                f"a project keeps at most {MAX_PER_KIND} saved {kind} reports: delete one first"
            )
        db.add(row)
        db.commit()
        db.refresh(row)
        return _report(row)


def delete_report(engine: Engine, project_id: str, kind: str, report_id: int) -> bool:
    """Whether a report of this project and kind had that id (another project's, or a
    segment, is as unknown as a missing one)."""
    with Session(engine) as db:
        result = db.execute(
            delete(SavedView).where(
                col(SavedView.id) == report_id,
                col(SavedView.project_id) == project_id,
                col(SavedView.kind) == _kind(kind),
            )
        )
        db.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
