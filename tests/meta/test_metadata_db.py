"""Metadata migrations and project/client look-ups on every SQL database we support:
SQLite always, MariaDB and PostgreSQL when their URLs are given (CI gives them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from gatrix.ingest.salts import SaltBook
from gatrix.meta import models
from gatrix.meta.projects import create_client, create_project, load_client, verify_secret

BACKENDS = {
    "sqlite": "",
    "mariadb": os.environ.get("GATRIX_TEST_MYSQL_URL", ""),
    "postgresql": os.environ.get("GATRIX_TEST_POSTGRES_URL", ""),
}


@pytest.fixture(params=list(BACKENDS))
def fresh_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    kind = request.param
    if kind == "sqlite":
        engine = models.make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
        yield engine
        engine.dispose()
        return
    server_url = BACKENDS[kind]
    if not server_url:
        pytest.skip(f"no {kind} URL given (GATRIX_TEST_MYSQL_URL / GATRIX_TEST_POSTGRES_URL)")
    name = f"gatrix_t{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine = models.make_engine(make_url(server_url).set(database=name).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        admin.dispose()


def test_migrations_and_lookups(fresh_engine: Engine) -> None:
    models.migrate(fresh_engine)
    models.migrate(fresh_engine)  # idempotent
    tables = set(sa.inspect(fresh_engine).get_table_names())
    assert {"user", "project", "client", "salt", "alembic_version"} <= tables

    created = create_project(
        fresh_engine,
        "Ünïcode Shop ✓",
        origins=["shop.example.com"],
        timezone="Asia/Seoul",
        kind="app",
    )
    info = load_client(fresh_engine, created.client_id)
    assert info is not None
    assert (info.project_id, info.type, info.origins, info.timezone) == (
        created.project_id,
        "root",
        ("shop.example.com",),
        "Asia/Seoul",
    )
    assert verify_secret(created.client_secret, info.secret_hash)
    # a second project with the same name gets its own id
    other = create_project(fresh_engine, "Ünïcode Shop ✓")
    assert other.project_id != created.project_id
    reader = create_client(fresh_engine, created.project_id, "read")
    assert load_client(fresh_engine, reader.client_id).type == "read"
    assert load_client(fresh_engine, "nope") is None
    with pytest.raises(ValueError):
        create_client(fresh_engine, created.project_id, "admin")
    with pytest.raises(ValueError):
        create_project(fresh_engine, "x", timezone="Nowhere/Land")

    book = SaltBook(fresh_engine)
    book.ensure(date(2026, 1, 2))
    again = SaltBook(fresh_engine)
    again.ensure(date(2026, 1, 2))
    assert book._salts == again._salts and len(book._salts) == 3


def test_revoked_client_is_not_found(fresh_engine: Engine) -> None:
    models.migrate(fresh_engine)
    created = create_project(fresh_engine, "revoke me")
    with fresh_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE client SET revoked = :t WHERE id = :id"),
            {"t": True, "id": created.client_id},
        )
    assert load_client(fresh_engine, created.client_id) is None
