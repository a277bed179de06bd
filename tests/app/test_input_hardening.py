"""Each input that once made the server answer 5xx, pinned as a regression test: hostile JSON
at /track, time zones the tz files know but ClickHouse does not, odd asset paths, a template
that called a dict method, and what a real bug looks like to the client and in the log."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from gatrix import logs
from gatrix.clickhouse.store import Store
from gatrix.logs import JsonFormatter
from gatrix.meta.models import Project
from gatrix.meta.projects import create_project

from ..conftest import CHROME_UA, LiveServer, wait_events, wait_for
from ..factory import events
from ..websession import SiteProject, admin_session, new_project, post_form

ORIGIN = "https://shop.example"
NESTED = b"[" * 1000 + b"]" * 1000


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> Iterator[httpx.Client]:
    client = admin_session(site)
    yield client
    client.close()


@pytest.fixture
def proj(site: LiveServer, admin: httpx.Client) -> SiteProject:
    return new_project(site, admin, f"hard {uuid.uuid4().hex[:6]}")


@pytest.fixture
def web(site: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        yield client


def ingest_headers(client_id: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "origin": ORIGIN,
        "user-agent": CHROME_UA,
        "openpanel-client-id": client_id,
    }


def assert_error(reply: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, (reply.status_code, reply.text[:300])
    body = reply.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    if code:
        assert body["error"] == code, body
    return body


# --- /track


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"type":"track","payload":{"name":"x","properties":{"deep":' + NESTED + b"}}}",
    ],
    ids=["whole-body", "property-value"],
)
@pytest.mark.parametrize("path", ["/track", "/track/batch"])
def test_json_nested_1000_levels_is_a_400_with_cors(
    web: httpx.Client, proj: SiteProject, path: str, body: bytes
) -> None:
    reply = web.post(path, content=body, headers=ingest_headers(proj.client_id))
    assert_error(reply, 400, "invalid_json")
    assert reply.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("kind", ["increment", "decrement"])
def test_counter_value_beyond_float_is_a_400(
    web: httpx.Client, proj: SiteProject, kind: str
) -> None:
    # msgspec refuses 1e400 while decoding; the same number written as an integer decodes
    # (JSON integers are unbounded) and has no float
    for value in (b"1e400", b"-1e400", b"1" + b"0" * 400, b"-" + b"9" * 4000):
        body = b'{"type":"%s","payload":{"profileId":"u1","property":"credits","value":%s}}' % (
            kind.encode(),
            value,
        )
        reply = web.post("/track", content=body, headers=ingest_headers(proj.client_id))
        assert_error(reply, 400)
        assert reply.headers["access-control-allow-origin"] == ORIGIN


def test_batch_answers_a_bad_envelope_alone_and_stores_the_others(
    web: httpx.Client, proj: SiteProject, store: Store
) -> None:
    huge = b"1" + b"0" * 400
    body = b"[%s]" % b",".join(
        [
            b'{"type":"track","payload":{"name":"first"}}',
            b'{"type":"increment","payload":{"profileId":"u","property":"p","value":%s}}' % huge,
            b'{"type":"track","payload":{"name":"x","properties":{"n":%s}}}' % huge,
            b'{"type":"track","payload":{"name":"second"}}',
        ]
    )
    reply = web.post("/track/batch", content=body, headers=ingest_headers(proj.client_id))
    assert reply.status_code == 200, reply.text
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    results = reply.json()["results"]
    assert [r["status"] for r in results] == [200, 400, 200, 200]
    assert results[1]["error"] == "invalid_field"
    rows = wait_events(store, proj.id, 3)
    assert sorted(r["name"] for r in rows) == ["first", "second", "x"]
    assert next(r for r in rows if r["name"] == "x")["properties"]["n"] == huge.decode()


def test_a_bug_in_ingest_is_a_json_500_with_cors_logged_with_a_traceback(
    web: httpx.Client,
    proj: SiteProject,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gatrix.ingest import routes

    real = routes.process_track

    def flaky(hit: Any, req: Any, ctx: Any) -> Any:
        if hit.name == "boom":
            raise RuntimeError("simulated ingest bug")
        return real(hit, req, ctx)

    monkeypatch.setattr(routes, "process_track", flaky)
    headers = {**ingest_headers(proj.client_id), "x-request-id": "ingest-probe-1"}
    with caplog.at_level(logging.ERROR):
        reply = web.post(
            "/track", json={"type": "track", "payload": {"name": "boom"}}, headers=headers
        )
    assert reply.status_code == 500
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert reply.json() | {"detail": ""} == {
        "error": "internal_error",
        "detail": "",
        "request_id": "ingest-probe-1",
    }
    assert_logged_with_traceback(caplog, "ingest-probe-1", "simulated ingest bug")

    batch = [{"type": "track", "payload": {"name": n}} for n in ("kept-1", "boom", "kept-2")]
    reply = web.post("/track/batch", json=batch, headers=ingest_headers(proj.client_id))
    assert reply.status_code == 200
    assert [r["status"] for r in reply.json()["results"]] == [200, 500, 200]
    assert sorted(r["name"] for r in wait_events(store, proj.id, 2)) == ["kept-1", "kept-2"]


def assert_logged_with_traceback(caplog: pytest.LogCaptureFixture, rid: str, message: str) -> None:
    records = [r for r in caplog.records if r.exc_info and getattr(r, "request_id", "") == rid]
    assert records, [(r.name, r.getMessage()) for r in caplog.records]
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["request_id"] == rid
    assert "Traceback" in entry["error"] and message in entry["error"]


def test_ingest_405_says_allow(web: httpx.Client, proj: SiteProject) -> None:
    reply = web.get("/track", headers=ingest_headers(proj.client_id))
    assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["allow"] == "POST, OPTIONS"
    assert reply.headers["access-control-allow-origin"] == ORIGIN


# --- time zones


# files zoneinfo opens that are not tz database zones (ClickHouse rejects right/*; the others
# are host-dependent or placeholders)
BAD_ZONES = ["posixrules", "right/UTC", "posix/Europe/Berlin", "localtime", "Factory"]


@pytest.mark.parametrize("zone", BAD_ZONES)
def test_zones_outside_the_tz_database_are_refused_on_save(
    site: LiveServer, admin: httpx.Client, zone: str
) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        create_project(site.services.engine, "tz", timezone=zone)
    created = post_form(
        admin, "/projects", "/projects", name="tz", origins="*", timezone=zone, kind="website"
    )
    assert created.status_code == 400 and "unknown time zone" in created.text
    proj = new_project(site, admin, f"tz {uuid.uuid4().hex[:6]}")
    settings = f"/projects/{proj.id}/settings"
    saved = post_form(
        admin, settings, settings, name="tz", origins="*", timezone=zone, kind="website"
    )
    assert saved.status_code == 400 and "unknown time zone" in saved.text
    assert 'value="UTC"' in admin.get(settings).text


@pytest.mark.parametrize("zone", ["posixrules", "right/UTC", "no/such/zone"])
def test_a_project_stored_with_a_bad_zone_reads_as_utc(
    site: LiveServer, admin: httpx.Client, web: httpx.Client, zone: str
) -> None:
    proj = new_project(site, admin, f"oldtz {uuid.uuid4().hex[:6]}")
    with Session(site.services.engine) as db:  # as a row saved before zones were checked
        row = db.get(Project, proj.id)
        row.timezone = zone
        db.add(row)
        db.commit()
    for path in ("metrics", "timeseries", "breakdown/pages", "breakdown/countries", "live"):
        reply = web.get(f"/insights/{proj.id}/{path}", headers=proj.read_headers)
        assert reply.status_code == 200, (path, reply.text)
        if "range" in reply.json():
            assert reply.json()["range"]["timezone"] == "UTC"
    for page in (
        f"/dashboard/{proj.id}",
        f"/dashboard/{proj.id}/fragments/chart",
        f"/dashboard/{proj.id}/fragments/panel?panel=pages&range=today",
    ):
        assert admin.get(page).status_code == 200, page
    assert web.get(f"/share/{proj.share_token}").status_code == 200


# --- paths, methods, schema


@pytest.mark.parametrize(
    "path",
    ["/assets/%00", "/assets/a%00b.css", "/assets/" + "a" * 300, "/assets/favicon.svg/x"],
    ids=["nul", "nul-inside", "name-too-long", "file-as-folder"],
)
def test_odd_asset_paths_are_4xx(web: httpx.Client, path: str) -> None:
    reply = web.get(path)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:200])
    assert set(reply.json()) == {"error", "detail"}


def test_framework_405_says_allow(web: httpx.Client, proj: SiteProject) -> None:
    for method, path in (
        ("DELETE", "/health"),
        ("POST", f"/insights/{proj.id}/metrics"),
        ("PUT", "/assets/favicon.svg"),
    ):
        reply = web.request(method, path)
        assert_error(reply, 405, "method_not_allowed")
        assert "GET" in reply.headers["allow"], (path, reply.headers)


def test_schema_documents_the_real_error_body(web: httpx.Client, proj: SiteProject) -> None:
    schema = web.get("/schema/openapi.json").json()
    components = schema["components"]["schemas"]
    checked = 0
    for path, operations in schema["paths"].items():
        for op in operations.values():
            for status, response in op.get("responses", {}).items():
                if int(status) < 400:
                    continue
                body = response["content"]["application/json"]["schema"]
                body = components[body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
                assert {"error", "detail"} <= set(body["required"]), (path, status, body)
                assert "status_code" not in body.get("properties", {}), (path, status)
                checked += 1
    assert checked >= 15  # five insights endpoints × 400/401/403 at least
    # and the documented shape is what a bad parameter really gets
    reply = web.get(
        f"/insights/{proj.id}/breakdown/pages", params={"limit": "many"}, headers=proj.read_headers
    )
    assert_error(reply, 400, "invalid_query")


def test_a_bug_behind_the_framework_is_logged_with_a_traceback_and_request_id(
    web: httpx.Client,
    admin: httpx.Client,
    proj: SiteProject,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gatrix.insights import reports
    from gatrix.web import dashboard

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("simulated report bug")

    monkeypatch.setattr(reports, "metrics", broken)
    monkeypatch.setattr(dashboard, "kpis_context", broken)
    with caplog.at_level(logging.ERROR):
        reply = web.get(
            f"/insights/{proj.id}/metrics",
            headers={**proj.read_headers, "x-request-id": "api-probe-1"},
        )
        assert reply.status_code == 500
        assert reply.json() | {"detail": ""} == {
            "error": "internal_error",
            "detail": "",
            "request_id": "api-probe-1",
        }
        assert "api-probe-1" in reply.json()["detail"]
        assert_logged_with_traceback(caplog, "api-probe-1", "simulated report bug")

        page = admin.get(
            f"/dashboard/{proj.id}/fragments/kpis", headers={"x-request-id": "page-probe-1"}
        )
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert "page-probe-1" in page.text
        assert_logged_with_traceback(caplog, "page-probe-1", "simulated report bug")


# --- dashboard


def test_clicking_an_event_row_shows_its_properties(
    site: LiveServer, admin: httpx.Client, web: httpx.Client, proj: SiteProject, store: Store
) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    events(
        store,
        proj.id,
        [
            {"at": at, "path": "/"},
            {"at": at + timedelta(minutes=1), "name": "purchase", "properties": {"plan": "pro"}},
        ],
    )
    query = "filter=name:is:purchase"
    # the pages render and ask for the events panel (panels load after the page)
    for client, url in (
        (admin, f"/dashboard/{proj.id}?{query}"),
        (web, f"/share/{proj.share_token}?{query}"),
    ):
        reply = client.get(url)
        assert reply.status_code == 200, (url, reply.text[:300])
        assert re.search(
            r'hx-get="[^"]*/fragments/panel\?panel=events&amp;[^"]*filter=name%3Ais%3Apurchase',
            reply.text,
        ), reply.text[reply.text.find("panel-events") :][:400]
    for client, url in (
        (admin, f"/dashboard/{proj.id}/fragments/panel?panel=events&{query}"),
        (web, f"/share/{proj.share_token}/fragments/panel?panel=events&{query}"),
    ):
        reply = client.get(url)
        assert reply.status_code == 200, (url, reply.text[:300])
        assert "Properties of <code>purchase</code>" in reply.text
        assert "tab_prop=plan" in reply.text or ">plan</a>" in reply.text, url


def test_nul_in_a_query_string_or_a_form_field_is_a_400(
    web: httpx.Client, admin: httpx.Client, proj: SiteProject
) -> None:
    # PostgreSQL refuses NUL in text: it must be refused as input before any query
    reply = web.get(f"/insights/{proj.id}/metrics?range=7d%00", headers=proj.read_headers)
    assert_error(reply, 400, "invalid_path")
    page = f"/projects/{proj.id}/settings"
    form = post_form(admin, page, page, name="a\x00b", origins="*", timezone="UTC")
    assert form.status_code == 400 and "NUL" in form.text


def test_a_host_header_url_building_cannot_parse_is_a_400(web: httpx.Client) -> None:
    for host in ("localhost:99999", "local host", "a:b:c"):
        reply = web.get("/login", headers={"host": host})
        assert_error(reply, 400, "invalid_host")


def test_replies_written_before_the_framework_carry_the_security_headers(
    web: httpx.Client,
) -> None:
    reply = web.get("/dashboard/%00")
    assert reply.status_code == 400
    assert reply.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/login", "/setup"])
def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(
    site: LiveServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """Half a form, then the connection closes: nobody is there to answer, and it is no bug."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10\r\nemail=a%40b.c&pa\r\n"
    )
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", site.port), timeout=5) as sock:
            sock.sendall(head.encode())
            time.sleep(0.3)  # the handler is reading the body when the client leaves
        assert wait_for(
            lambda: any("left mid-request" in r.getMessage() for r in caplog.records), timeout=5
        ), [(r.name, r.getMessage()) for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_logs_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server started inside another program that swaps `sys.stderr` (a test run does per
    test) logs to the stream in place when it logs, never to one closed since."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("info", "text")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("gatrix.test").warning("after the swap")
    assert "after the swap" in second.getvalue()
    assert "Logging error" not in second.getvalue()
