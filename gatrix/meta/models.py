"""Metadata tables (SQLModel) and the engine that reaches them.

String columns carry explicit lengths because MySQL/MariaDB refuse VARCHAR without one.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Column, Text, event, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from gatrix.resources import sql_migrations_dir

CLIENT_TYPES = ("write", "read", "root")
PROJECT_KINDS = ("website", "app", "backend")


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=255, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Project(SQLModel, table=True):
    id: str = Field(max_length=64, primary_key=True)
    name: str = Field(max_length=200)
    # JSON list of origin patterns ("example.com", "*.example.com", "*")
    origins_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    timezone: str = Field(default="UTC", max_length=64)
    kind: str = Field(default="website", max_length=16)
    is_default: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    # days of events to keep; 0 keeps everything
    retention_days: int = 0
    # JSON {"ips": [...], "hosts": [...], "paths": [...]}: traffic dropped at ingestion
    exclusions_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # the `website` id Umami's tracker sends; empty means the project's tracking client id
    umami_website_id: str = Field(default="", max_length=64)

    @property
    def origins(self) -> list[str]:
        return list(json.loads(self.origins_json or "[]"))


class Client(SQLModel, table=True):
    id: str = Field(max_length=64, primary_key=True)
    project_id: str = Field(max_length=64, foreign_key="project.id", index=True)
    name: str = Field(default="", max_length=200)
    type: str = Field(default="write", max_length=8)
    secret_hash: str | None = Field(default=None, max_length=255)
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)


ROLES = ("admin", "viewer")


class ProjectGrant(SQLModel, table=True):
    __tablename__ = "project_grant"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    project_id: str = Field(max_length=64, foreign_key="project.id", index=True)
    role: str = Field(default="viewer", max_length=8)


class ShareLink(SQLModel, table=True):
    __tablename__ = "share_link"
    token: str = Field(max_length=64, primary_key=True)
    project_id: str = Field(max_length=64, foreign_key="project.id", index=True)
    password_hash: str | None = Field(default=None, max_length=255)
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """Who did something irreversible to whose data, and when; never what the data was."""

    __tablename__ = "audit_entry"
    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=255)
    action: str = Field(max_length=32)
    subject: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class Goal(SQLModel, table=True):
    """A conversion a project counts: a step (`event:signup`, `page:/thanks*`, with optional
    property conditions; gatrix.insights.steps reads it) and where its revenue is."""

    id: int | None = Field(default=None, primary_key=True)
    # no foreign key, as for audit entries: deleting a project deletes its goals itself
    project_id: str = Field(max_length=64, index=True)
    name: str = Field(max_length=100)
    step: str = Field(max_length=500)
    # a property holding the amount; empty: the events' `__revenue`
    revenue_property: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


SAVED_KINDS = ("segment", "funnel", "retention", "paths")


class SavedView(SQLModel, table=True):
    """A named dashboard state a project keeps: a segment (a set of filters) or a report's
    whole query string (a funnel's steps and window, a retention grid, a paths question).
    The query is stored as the URL query it came from, so sharing it is sharing a URL."""

    __tablename__ = "saved_view"
    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=100)
    query: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_by: str = Field(default="", max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class Annotation(SQLModel, table=True):
    """A dated note ("v2.3 released") drawn on every time-series chart of its project."""

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(max_length=64, index=True)
    # the day in the project's time zone the note belongs to
    day: date
    text: str = Field(max_length=200)
    created_by: str = Field(default="", max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class Salt(SQLModel, table=True):
    # One random salt per UTC day: visitor ids cannot be linked across days.
    day: date = Field(primary_key=True)
    value: str = Field(max_length=64)


def make_engine(dsn: str) -> Engine:
    if dsn.startswith("sqlite"):
        engine = create_engine(dsn, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(dsn, pool_pre_ping=True, pool_recycle=1800)


def migrate(engine: Engine) -> None:
    """Apply the Alembic migrations in migrations/sql (idempotent)."""

    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(sql_migrations_dir()))
    config.attributes["engine"] = engine
    command.upgrade(config, "head")


def lock_project(db: Session, project_id: str) -> None:
    """Hold the project's row until this transaction ends, so that creations of capped rows
    in one project take turns (PostgreSQL, MySQL). Without it two creators can count, insert
    and check out of order: ids come from a sequence in insert order but become visible in
    commit order, so the later id can check before the earlier one is committed and both
    stay. SQLite has one writer at a time and no FOR UPDATE; `within_cap` covers it."""
    db.exec(select(Project.id).where(col(Project.id) == project_id).with_for_update()).first()


def within_cap(db: Session, row: Any, cap: int, *same: Any) -> bool:
    """After `row` is committed: whether it is among the first `cap` rows of its kind (the
    `same` conditions), by id. Two requests that both counted 49 both insert; the later one
    sees itself 51st and is removed again, so no race lets a project pass its cap."""
    model = type(row)
    ahead = db.exec(
        select(func.count()).select_from(model).where(*same, col(model.id) <= row.id)
    ).one()
    if ahead <= cap:
        return True
    db.delete(row)
    db.commit()
    return False
