"""`GET /insights/{projectId}/export` over HTTP: the file, and JSON errors for bad requests."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gatrix.clickhouse.store import Store
from gatrix.meta.projects import NewClient, create_project

from ..factory import events


def _headers(client: NewClient) -> dict[str, str]:
    return {
        "openpanel-client-id": client.client_id,
        "openpanel-client-secret": client.client_secret,
    }


def _seed(store: Store, project: str) -> None:
    at = datetime.now(UTC) - timedelta(hours=2)
    events(
        store,
        project,
        [
            {"at": at, "path": "/a", "country": "KR"},
            {"at": at + timedelta(minutes=1), "path": "/b", "country": "KR"},
            {
                "at": at + timedelta(minutes=2),
                "path": "/c",
                "country": "US",
                "device_id": "v2",
                "session_id": "s2",
                "properties": {"k": "v,w"},
            },
        ],
    )


def test_export_streams_a_file_with_the_range_and_filters(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    _seed(store, server_project.project_id)
    url = f"/insights/{server_project.project_id}/export"
    reply = http.get(
        url, params={"format": "csv", "range": "24h"}, headers=_headers(server_project)
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [r["path"] for r in rows] == ["/a", "/b", "/c"]
    assert json.loads(rows[2]["properties"]) == {"k": "v,w"}
    filtered = http.get(
        url,
        params={"format": "ndjson", "range": "24h", "filter": "countries:is:KR"},
        headers=_headers(server_project),
    )
    lines = [json.loads(line) for line in filtered.text.splitlines()]
    assert [line["path"] for line in lines] == ["/a", "/b"]
    assert "project_id" not in lines[0]


def _error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == code
    return body


def test_bad_export_requests_get_json_errors(
    http: httpx.Client, server_project: NewClient, server_engine: Any
) -> None:
    url = f"/insights/{server_project.project_id}/export"
    headers = _headers(server_project)
    _error(http.get(url, params={"format": "xlsx"}, headers=headers), 400, "invalid_query")
    _error(http.get(url, params={"kind": "sessions"}, headers=headers), 400, "invalid_query")
    _error(http.get(url, params={"range": "forever"}, headers=headers), 400, "invalid_query")
    _error(http.get(url, params={"filter": "nope:is:x"}, headers=headers), 400, "invalid_query")
    _error(http.get(url), 401, "unauthenticated")
    other = create_project(server_engine, "other export project", origins=["*"])
    _error(http.get(f"/insights/{other.project_id}/export", headers=headers), 403, "forbidden")


def test_links_come_out_over_http_as_one_row_each(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    project = server_project.project_id
    at = (datetime.now(UTC) - timedelta(days=400)).strftime("%Y-%m-%d %H:%M:%S")
    row = {"project_id": project, "source": "dev-1", "target": "amy", "kind": "device"}
    # the same link twice (merged to its first time) and an alias; a year old: no range cuts it
    rows = [{**row, "linked_at": at}, {**row, "linked_at": "2030-01-01 00:00:00"}]
    rows.append({**row, "source": "amy-old", "kind": "alias", "linked_at": at})
    store.insert_json_rows("identity_links", [json.dumps(r).encode() for r in rows], "links-t")
    reply = http.get(
        f"/insights/{project}/export",
        params={"kind": "links", "format": "ndjson", "range": "24h"},
        headers=_headers(server_project),
    )
    assert reply.status_code == 200, reply.text
    assert f"gatrix-{project}-links.ndjson" in reply.headers["content-disposition"]
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert [(x["source"], x["kind"], x["linked_at"][:19]) for x in lines] == [
        ("amy-old", "alias", at),
        ("dev-1", "device", at),
    ]
