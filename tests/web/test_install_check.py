"""The install check agrees with the ingestion figures beside it.

The server here runs no flush worker (GATRIX_EMBEDDED_WORKER=false with no `gatrix worker`,
or a flush that keeps failing): events are accepted into the Redis buffer and stay there.
The settings page must then say they arrive, with the last one's time in the project's zone,
not "Waiting for the first event…" above "Accepted: 3". Once the buffer is written, the
check names the first event.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from ..conftest import LiveServer, make_settings, send_page_view
from ..websession import admin_session, post_form

ZONE = "Asia/Kolkata"  # UTC+5:30: a shown time in UTC or a whole-hour zone would not match


@pytest.fixture(scope="module")
def unflushed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    own = Path(tmp_path_factory.mktemp("unflushed"))
    settings = make_settings(
        own, clickhouse_url=f"chdb://{data_dir / 'clickhouse'}", embedded_worker=False
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def admin(unflushed: LiveServer) -> httpx.Client:
    return admin_session(unflushed)


def minutes_between(start: datetime, end: datetime) -> set[str]:
    """Every `Nov 27, 14:05` the zone's clock showed from start to end."""
    shown, moment = set(), start.replace(second=0, microsecond=0)
    while moment <= end:
        local = moment.astimezone(ZoneInfo(ZONE))
        shown.add(f"{local:%b} {local.day}, {local:%H:%M}")
        moment += timedelta(minutes=1)
    return shown


def drain(server: LiveServer) -> int:
    """Write the buffer to ClickHouse on the server's loop, as the worker would."""
    flush = server.services.flusher.run(max_seconds=10.0)
    return asyncio.run_coroutine_threadsafe(flush, server.loop).result(timeout=30)


def check_of(page: str) -> str:
    match = re.search(r'<div id="install-check".*?</div>', page, re.S)
    assert match, page
    return match.group(0)


def test_accepted_events_are_reported_before_they_are_written(
    unflushed: LiveServer, admin: httpx.Client
) -> None:
    created = post_form(
        admin, "/projects", "/projects", name="Unflushed", origins="*", timezone=ZONE
    )
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', created.text).group(1)
    client_id = re.search(r'id="new-client-id">([^<]+)<', created.text).group(1)
    settings = f"/projects/{project_id}/settings"
    before = admin.get(settings).text
    assert "Waiting for the first event" in check_of(before)
    assert 'id="health-accepted">0<' in before

    sent_at = datetime.now(UTC)
    for n in range(3):
        reply = send_page_view(unflushed.url, client_id, f"https://shop.example.com/p{n}")
        assert reply.status_code == 200
    page = admin.get(settings).text
    seen_at = datetime.now(UTC)
    assert 'id="health-accepted">3<' in page
    check = check_of(page)
    # the figures say 3 were accepted: the check must not say it is still waiting
    assert "Waiting" not in check and 'data-state="arriving"' in check
    assert "Receiving events — 3 accepted today" in check
    last = re.search(r'<time datetime="([^"]+)">([^<]+)</time> \(([^)]+)\)', check)
    assert last, check
    assert last.group(3) == ZONE
    assert last.group(2) in minutes_between(sent_at, seen_at)  # "Nov 27, 19:35", zone time
    assert datetime.fromisoformat(last.group(1)).utcoffset() == timedelta(0)
    # the ingestion list says the same time
    assert re.search(rf"Last event: <time[^>]*>{re.escape(last.group(2))}</time>", page)
    # the fragment the page polls agrees, and keeps polling until the events are stored
    fragment = admin.get(f"/projects/{project_id}/install-check").text
    assert 'data-state="arriving"' in fragment and 'hx-trigger="every 2s' in fragment

    assert drain(unflushed) >= 3
    stored = admin.get(f"/projects/{project_id}/install-check").text
    assert 'data-state="stored"' in stored and "hx-trigger" not in stored
    assert "Receiving events" in stored and re.search(r"on <code>/p[012]</code>", stored)
    times = re.findall(r'<time datetime="[^"]+">([^<]+)</time>', stored)
    assert len(times) == 2 and all(t in minutes_between(sent_at, seen_at) for t in times)


def test_a_project_made_again_after_deletion_starts_waiting(
    unflushed: LiveServer, admin: httpx.Client
) -> None:
    """Project ids are slugs of their names: a project deleted and made again under the same
    name gets the same id, and must not inherit the old one's arrivals."""

    def make() -> tuple[str, str]:
        created = post_form(admin, "/projects", "/projects", name="Again", origins="*")
        project_id = re.search(r'action="/projects/([^/"]+)/settings"', created.text).group(1)
        return project_id, re.search(r'id="new-client-id">([^<]+)<', created.text).group(1)

    project_id, client_id = make()
    settings = f"/projects/{project_id}/settings"
    assert send_page_view(unflushed.url, client_id, "https://shop.example.com/").status_code == 200
    assert 'data-state="arriving"' in check_of(admin.get(settings).text)
    drain(unflushed)
    deleted = post_form(admin, settings, f"/projects/{project_id}/delete", confirm="Again")
    assert deleted.url.path == "/projects"
    again, _ = make()
    assert again == project_id
    page = admin.get(settings).text
    assert "Waiting for the first event" in check_of(page)
    assert 'id="health-accepted">0<' in page and "Last event: none yet" in page
