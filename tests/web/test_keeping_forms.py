"""The settings page's data-keeping forms over plain HTTP: retention and exclusions save with
Post/Redirect/Get, a bad rule comes back as a 400 with its message and the typed rules (never
a 500), other users' CSRF-less posts are refused; the stored figures show the project's data;
and the CLI sets retention and exclusions and runs the retention pass."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix import cli
from gatrix.clickhouse.store import Store
from gatrix.meta import keeping
from gatrix.meta.projects import load_client

from ..conftest import LiveServer
from ..factory import events
from ..websession import admin_session, csrf_of, new_project, post_form


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> httpx.Client:
    return admin_session(site)


def test_retention_and_exclusions_save_and_apply(site: LiveServer, admin: httpx.Client) -> None:
    project = new_project(site, admin, f"Keep {uuid.uuid4().hex[:6]}")
    settings = f"/projects/{project.id}/settings"
    engine = site.services.engine
    page = post_form(admin, settings, f"/projects/{project.id}/retention", retention_days="30")
    assert page.status_code == 200 and "Keeping 30 days of events." in page.text
    assert keeping.keeping(engine, project.id)["retention_days"] == 30
    assert 'id="retention-days" inputmode="numeric" value="30"' in page.text

    page = post_form(
        admin,
        settings,
        f"/projects/{project.id}/exclusions",
        exclude_ips="10.0.0.0/8\n2001:db8::/32",
        exclude_hosts="*.staging.example.com",
        exclude_paths="/admin/*",
    )
    assert page.status_code == 200 and "Saved." in page.text
    assert "2001:db8::/32" in page.text and "*.staging.example.com" in page.text
    info = load_client(engine, project.client_id)
    assert info is not None and info.exclusions is not None
    assert info.exclusions.reason("10.9.8.7", "", "") == "excluded_ip"


@pytest.mark.parametrize(
    ("action", "fields", "message"),
    [
        ("exclusions", {"exclude_ips": "10.0.0.0/8\n10.0.0.0/99"}, "neither an address nor a CIDR"),
        ("exclusions", {"exclude_paths": "admin"}, "must start with / or *"),
        ("exclusions", {"exclude_hosts": "x" * 100_000}, "at most 200 characters"),
        ("retention", {"retention_days": "-1"}, "retention is 0 (keep everything) to 3650 days"),
        ("retention", {"retention_days": "a week"}, "whole number of days"),
    ],
)
def test_bad_input_comes_back_with_a_message(
    site: LiveServer, admin: httpx.Client, action: str, fields: dict[str, str], message: str
) -> None:
    project = new_project(site, admin, f"Bad {uuid.uuid4().hex[:6]}")
    settings = f"/projects/{project.id}/settings"
    token = csrf_of(admin.get(settings).text)
    reply = admin.post(f"/projects/{project.id}/{action}", data={"_csrf": token, **fields})
    assert reply.status_code == 400, reply.text[:300]
    assert message in reply.text.replace("&#39;", "'")
    if "exclude_ips" in fields:  # what was typed is still in the box
        assert "10.0.0.0/99" in reply.text
    assert keeping.keeping(site.services.engine, project.id) == {
        "retention_days": 0,
        "exclusions": {"ips": "", "hosts": "", "paths": ""},
    }
    # without the CSRF token nothing changes
    refused = admin.post(f"/projects/{project.id}/retention", data={"retention_days": "5"})
    assert refused.status_code == 403
    assert keeping.keeping(site.services.engine, project.id)["retention_days"] == 0


def test_the_settings_page_shows_what_is_stored(
    site: LiveServer, admin: httpx.Client, store: Store
) -> None:
    project = new_project(site, admin, f"Stored {uuid.uuid4().hex[:6]}", timezone="Asia/Seoul")
    first = datetime(2026, 3, 1, 15, 4, tzinfo=UTC)  # Mar 2, 00:04 in Seoul
    events(
        store,
        project.id,
        [{"at": first + timedelta(minutes=i), "session_id": f"s{i % 3}"} for i in range(7)],
    )
    page = admin.get(f"/projects/{project.id}/settings").text
    assert 'id="stored-events">7<' in page and 'id="stored-sessions">3<' in page
    assert 'id="stored-profiles">0<' in page
    assert "Mar 2, 00:04</time> (Asia/Seoul)" in page
    assert 'id="stored-bytes">about ' in page and "about 0 B" not in page


def test_the_cli_sets_retention_and_exclusions_and_runs_retention(
    site: LiveServer, store: Store, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = site.settings
    # the CLI reads the environment: point it at this server's databases
    monkeypatch.setenv("DATABASE_URL", s.database_dsn)
    monkeypatch.setenv("CLICKHOUSE_URL", s.clickhouse_dsn)
    monkeypatch.setenv("REDIS_URL", s.redis_dsn or "")
    monkeypatch.setenv("GATRIX_REDIS_PREFIX", s.redis_prefix)
    engine = site.services.engine
    from gatrix.meta.projects import create_project

    project = create_project(engine, f"cli {uuid.uuid4().hex[:6]}", timezone="UTC").project_id
    old, new = datetime.now(UTC) - timedelta(days=40), datetime.now(UTC) - timedelta(hours=1)
    events(store, project, [{"at": old, "session_id": "old"}, {"at": new, "session_id": "new"}])
    data_dir = ["--data-dir", str(s.data_path)]

    assert cli.main(["projects", "retention", "--project", project, "--days", "10", *data_dir]) == 0
    assert json.loads(capsys.readouterr().out) == {"project_id": project, "retention_days": 10}
    assert cli.main(["projects", "retention", "--project", project, "--days", "x", *data_dir]) == 2
    assert "whole number of days" in capsys.readouterr().err

    args = ["projects", "exclude", "--project", project, "--ip", "192.0.2.0/24", "--path", "/x*"]
    assert cli.main([*args, "--host", "*.dev.example.com", *data_dir]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved == {
        "project_id": project,
        "ips": ["192.0.2.0/24"],
        "hosts": ["*.dev.example.com"],
        "paths": ["/x*"],
    }
    assert cli.main([*args[:4], "--ip", "192.0.2.0/40", *data_dir]) == 2
    assert "neither an address nor a CIDR range" in capsys.readouterr().err

    assert cli.main(["retention", "--project", project, *data_dir]) == 0
    [line] = capsys.readouterr().out.splitlines()
    result = json.loads(line)
    assert result["project_id"] == project and "events" in result["tables"]
    left = store.query_rows(
        "SELECT session_id FROM gatrix.events WHERE project_id = {p:String}", {"p": project}
    )
    assert left == [("new",)]


def test_the_running_servers_worker_runs_retention_when_asked(
    site: LiveServer, store: Store
) -> None:
    """What `gatrix retention` does beside an embedded `gatrix serve`: the server's own
    worker runs the job (chDB admits one process per data directory)."""
    from gatrix.meta.projects import create_project

    services = site.services
    project = create_project(services.engine, f"job {uuid.uuid4().hex[:6]}").project_id
    keeping.set_retention(services.engine, project, 7)
    old, new = datetime.now(UTC) - timedelta(days=9), datetime.now(UTC) - timedelta(hours=1)
    events(store, project, [{"at": old, "session_id": "old"}, {"at": new, "session_id": "new"}])
    url = services.embedded_redis.url if services.embedded_redis else site.settings.redis_dsn
    done = asyncio.run(cli.retention_in_server(url, site.settings.redis_prefix, project))
    assert done is not None and [r["project_id"] for r in done] == [project]
    assert "events" in done[0]["tables"]
    left = store.query_rows(
        "SELECT session_id FROM gatrix.events WHERE project_id = {p:String}", {"p": project}
    )
    assert left == [("new",)]
    # nobody listening: the command runs the pass itself
    assert asyncio.run(cli.retention_in_server("redis://127.0.0.1:1/0", "x", None)) is None
