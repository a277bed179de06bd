"""What a project keeps (retention in days) and keeps out (traffic exclusions): reading and
writing the two project columns, with the validation both the settings page and the CLI use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gatrix.ingest import exclusions
from gatrix.meta.accounts import AccountError
from gatrix.meta.models import Project
from gatrix.meta.timezones import usable

# ten years: a larger number is a typo, and "forever" is 0
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class Retained:
    project_id: str
    days: int
    timezone: str


def parse_days(text: str) -> int:
    try:
        days = int(str(text).strip() or "0")
    except ValueError:
        raise AccountError("retention is a whole number of days (0 keeps everything)") from None
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise AccountError(f"retention is 0 (keep everything) to {MAX_RETENTION_DAYS} days")
    return days


def set_retention(engine: Engine, project_id: str, days: int) -> None:
    days = parse_days(str(days))
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            raise AccountError(f"unknown project: {project_id}")
        project.retention_days = days
        db.commit()


def set_exclusions(engine: Engine, project_id: str, texts: dict[str, str | list[str]]) -> None:
    try:
        rules = exclusions.parse(texts)
    except exclusions.InvalidRule as exc:
        raise AccountError(str(exc)) from exc
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            raise AccountError(f"unknown project: {project_id}")
        project.exclusions_json = json.dumps(rules)
        db.commit()


def keeping(engine: Engine, project_id: str) -> dict | None:
    """The settings page's view: retention days and the rules as typed, one per line."""
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            return None
        rules = exclusions.loads(project.exclusions_json)
        return {
            "retention_days": project.retention_days,
            "exclusions": {kind: "\n".join(rules[kind]) for kind in exclusions.KINDS},
        }


def retained_projects(engine: Engine) -> list[Retained]:
    """Projects that keep events for a limited time, with the zone their days are counted in."""
    with Session(engine) as db:
        rows = db.exec(select(Project).where(Project.retention_days > 0)).all()
        return [Retained(p.id, p.retention_days, usable(p.timezone)) for p in rows]
