"""The audit log: who did something irreversible to whose data, and when — never what the
data was (an erased person's id is kept, their profile and events are not)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gatrix.meta.models import AuditEntry

ERASE = "erase_person"


def record(engine: Engine, project_id: str, actor: str, action: str, subject: str) -> None:
    with Session(engine) as db:
        db.add(AuditEntry(project_id=project_id, actor=actor, action=action, subject=subject))
        db.commit()


def entries(engine: Engine, project_id: str, limit: int = 100) -> list[dict[str, str | datetime]]:
    with Session(engine) as db:
        rows = db.exec(
            select(AuditEntry)
            .where(AuditEntry.project_id == project_id)
            .order_by(col(AuditEntry.id).desc())
            .limit(limit)
        ).all()
    return [
        {"actor": r.actor, "action": r.action, "subject": r.subject, "at": r.created_at}
        for r in rows
    ]
