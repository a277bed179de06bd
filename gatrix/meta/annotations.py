"""A project's annotations: dated notes ("v2.3 released") the dashboard draws on its charts.
A note belongs to a day in the project's time zone, not to an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gatrix.meta.models import Annotation

MAX_ANNOTATIONS = 500
MAX_TEXT = 200
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)


class InvalidAnnotation(ValueError):
    """An annotation we refuse; the API answers 400 invalid_annotation with this message."""


@dataclass(frozen=True)
class Note:
    id: int
    day: date
    text: str
    created_by: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "day": self.day.isoformat(),
            "text": self.text,
            "created_by": self.created_by,
        }


def _note(row: Annotation) -> Note:
    return Note(int(row.id or 0), row.day, row.text, row.created_by)


def parse_day(value: Any) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise InvalidAnnotation("day is a date written YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidAnnotation("day is a date written YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidAnnotation("day is between 2000-01-01 and 2100-12-31")
    return day


def parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidAnnotation("text must be a string")
    text = value.strip()
    if not text or len(text) > MAX_TEXT or not text.isprintable():
        raise InvalidAnnotation(f"text is 1 to {MAX_TEXT} printable characters")
    return text


def parse_annotation(body: Any) -> tuple[date, str]:
    """`{"day": "2026-03-05", "text": "v2.3 released"}`."""
    if not isinstance(body, dict):
        raise InvalidAnnotation('send a JSON object: {"day": "YYYY-MM-DD", "text"}')
    unknown = set(body) - {"day", "text"}
    if unknown:
        raise InvalidAnnotation(f"unknown field {sorted(unknown)[0][:40]!r}")
    return parse_day(body.get("day")), parse_text(body.get("text"))


def list_annotations(
    engine: Engine, project_id: str, first: date | None = None, last: date | None = None
) -> list[Note]:
    """The project's notes in day order; with `first`/`last`, only the days between them
    (both included)."""
    query = select(Annotation).where(Annotation.project_id == project_id)
    if first is not None:
        query = query.where(col(Annotation.day) >= first)
    if last is not None:
        query = query.where(col(Annotation.day) <= last)
    with Session(engine) as db:
        rows = db.exec(query.order_by(col(Annotation.day), col(Annotation.id))).all()
        return [_note(row) for row in rows]


def create_annotation(engine: Engine, project_id: str, body: Any, actor: str = "") -> Note:
    day, text = parse_annotation(body)
    with Session(engine) as db:
        count = db.exec(
            select(func.count()).select_from(Annotation).where(Annotation.project_id == project_id)
        ).one()
        if count >= MAX_ANNOTATIONS:
            raise InvalidAnnotation(f"a project has at most {MAX_ANNOTATIONS} annotations")
        row = Annotation(project_id=project_id, day=day, text=text, created_by=actor[:255])
        db.add(row)
        db.commit()
        db.refresh(row)
        return _note(row)


def delete_annotation(engine: Engine, project_id: str, annotation_id: int) -> bool:
    with Session(engine) as db:
        result = db.execute(
            delete(Annotation).where(
                col(Annotation.id) == annotation_id, col(Annotation.project_id) == project_id
            )
        )
        db.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
