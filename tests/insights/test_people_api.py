"""`/insights/{projectId}/profiles…` over real HTTP: the list, one person, erasure, who may
do what, and hostile ids."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time
from gatrix.meta import audit
from gatrix.meta.projects import create_client, create_project

from ..factory import events

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
DAY = {"range": "custom", "start": "2026-03-10", "end": "2026-03-10"}


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def identify(store: Store, project: str, profile: str, at: datetime, **fields: Any) -> None:
    row = {"project_id": project, "profile_id": profile, "updated_at": ch_time(_ms(at)), **fields}
    store.insert_json_rows("profiles", [json.dumps(row).encode()], f"t-{uuid.uuid4()}")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def seed(store: Store, project: str) -> None:
    """ann logs in on her laptop; a kiosk is cara's (linked first), later dan's; bob is a
    backend's profile id (the device is the profile id)."""
    events(
        store,
        project,
        [
            {"at": minutes(0), "device_id": "d-ann", "session_id": "s1", "path": "/"},
            {
                "at": minutes(1),
                "device_id": "d-ann",
                "profile_id": "ann",
                "session_id": "s1",
                "path": "/app",
                "country": "KR",
                "city": "Seoul",
            },
            {"at": minutes(5), "device_id": "bob", "profile_id": "bob", "session_id": "s2"},
            {"at": minutes(10), "device_id": "kiosk", "session_id": "s3", "path": "/"},
            {
                "at": minutes(11),
                "device_id": "kiosk",
                "profile_id": "cara",
                "session_id": "s3",
                "path": "/cara",
            },
            {
                "at": minutes(50),
                "device_id": "kiosk",
                "profile_id": "dan",
                "session_id": "s4",
                "path": "/dan",
            },
            {"at": minutes(60), "device_id": "anon", "session_id": "s5", "path": "/"},
        ],
    )
    identify(store, project, "ann", minutes(1), email="ann@example.com", first_name="Ann")
    identify(store, project, "cara", minutes(11), email="cara@example.com")


class People:
    def __init__(self, server: Any, http: httpx.Client, store: Store) -> None:
        engine = server.services.engine
        root = create_project(engine, f"ppl {uuid.uuid4().hex[:6]}")
        self.engine, self.http, self.project = engine, http, root.project_id
        self.root = self._headers(root)
        self.read = self._headers(create_client(engine, self.project, "read"))
        self.write = self._headers(create_client(engine, self.project, "write"))
        self.other_root = self._headers(create_project(engine, f"other {uuid.uuid4().hex[:6]}"))
        seed(store, self.project)

    @staticmethod
    def _headers(client: Any) -> dict[str, str]:
        return {
            "openpanel-client-id": client.client_id,
            "openpanel-client-secret": client.client_secret,
        }

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        url = f"/insights/{self.project}/profiles{path}"
        chosen = self.read if headers is None else headers
        return self.http.request(method, url, params=params, headers=chosen)

    def metrics(self) -> tuple[int, int, int]:
        m = self.http.get(f"/insights/{self.project}/metrics", params=DAY, headers=self.read)
        body = m.json()
        return body["visitors"], body["sessions"], body["pageviews"]


@pytest.fixture
def people(server: Any, http: httpx.Client, store: Store) -> People:
    return People(server, http, store)


def test_the_list_search_and_paging(people: People) -> None:
    reply = people.call("GET", "")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [r["id"] for r in body["rows"]] == ["dan", "cara", "bob", "ann"]
    ann = body["rows"][-1]
    assert (ann["name"], ann["email"], ann["events"], ann["sessions"]) == (
        "Ann",
        "ann@example.com",
        2,
        1,
    )
    assert people.call("GET", "", q="ANN@EXAMPLE").json()["rows"][0]["id"] == "ann"
    paged = people.call("GET", "", limit=3, page=2).json()
    assert [r["id"] for r in paged["rows"]] == ["ann"] and paged["has_more"] is False
    assert people.call("GET", "", limit=3).json()["has_more"] is True
    for bad in ({"sort": "x"}, {"limit": 0}, {"page": "abc"}, {"q": "x" * 300}):
        reply = people.call("GET", "", **bad)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_query", bad


def test_one_person_with_the_events_before_the_login(people: People) -> None:
    reply = people.call("GET", "/ann")
    assert reply.status_code == 200, reply.text
    ann = reply.json()
    assert [e["path"] for e in ann["events"]] == ["/app", "/"]  # the anonymous view too
    assert ann["totals"] == {"events": 2, "sessions": 1}
    assert [d["id"] for d in ann["devices"]] == ["d-ann"]
    assert ann["locations"][0]["country"] in ("KR", "")
    page = people.call("GET", "/ann", limit=1).json()
    assert page["has_more"] and [e["path"] for e in page["events"]] == ["/app"]
    older = people.call("GET", "/ann", limit=1, before=page["next_before"]).json()
    assert [e["path"] for e in older["events"]] == ["/"]
    missing = people.call("GET", "/nobody")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert people.call("GET", "/anon").status_code == 404  # an anonymous device is no person


@pytest.mark.parametrize(
    "hostile",
    ["x" * 300, "a'b\"c", "..%2F..%2Fetc", "%00", "' OR 1=1 --", "%E2%80%AE", "a%0Ab"],
)
def test_hostile_ids_are_a_clean_4xx(people: People, hostile: str) -> None:
    for method, headers in (("GET", people.read), ("DELETE", people.root)):
        reply = people.call(method, f"/{hostile}", headers=headers)
        assert 400 <= reply.status_code < 500, (method, hostile, reply.text)
        assert reply.json()["error"]


def test_only_a_root_client_of_the_project_may_erase(people: People) -> None:
    assert people.call("DELETE", "/cara", headers={}).status_code == 401
    for headers, code in (
        (people.read, "client_not_root"),
        (people.write, "client_cannot_read"),
        (people.other_root, "forbidden"),
    ):
        reply = people.call("DELETE", "/cara", headers=headers)
        assert reply.status_code == 403 and reply.json()["error"] == code
    assert people.call("GET", "/cara").status_code == 200  # still there


def test_erasing_takes_exactly_that_persons_rows(people: People) -> None:
    assert people.metrics() == (5, 5, 7)
    reply = people.call("DELETE", "/cara", headers=people.root)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["id"] == "cara"
    # the kiosk's anonymous view was cara's (linked first); dan's later one stays his
    assert out["deleted"]["events"] == 2
    assert out["deleted"]["profiles"] == 1
    assert out["deleted"]["identity_links"] == 1  # kiosk → cara; kiosk → dan is dan's
    assert out["deleted"]["sessions"] >= 1 and out["hours_rebuilt"] == 1
    assert people.call("GET", "/cara").status_code == 404
    dan = people.call("GET", "/dan").json()
    assert [e["path"] for e in dan["events"]] == ["/dan"]
    assert [r["id"] for r in people.call("GET", "").json()["rows"]] == ["dan", "bob", "ann"]
    assert people.metrics() == (4, 4, 5)
    entries = audit.entries(people.engine, people.project)
    assert [(e["action"], e["subject"]) for e in entries] == [("erase_person", "cara")]
    assert entries[0]["actor"] == people.root["openpanel-client-id"]
    assert "cara@example.com" not in json.dumps(entries, default=str)
    assert people.call("DELETE", "/cara", headers=people.root).status_code == 404


def test_erasing_one_person_at_once_many_times_erases_them_once(
    people: People, server: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert people.metrics() == (5, 5, 7)
    url = f"{server.url}/insights/{people.project}/profiles/cara"

    def delete(_: int) -> int:
        # a client of its own per request: a double click, a retrying backend
        return httpx.delete(url, headers=people.root, timeout=120).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(delete, range(6)))
    assert codes == [200, 404, 404, 404, 404, 404]
    # the hours rebuilt once: the rollups hold exactly what is left, as after one erase
    assert people.metrics() == (4, 4, 5)


def test_a_person_stored_with_a_control_character_can_still_be_erased(
    people: People, store: Store
) -> None:
    # ingestion refuses such ids now; one stored before must still be reachable on request
    at = minutes(5)
    identify(store, people.project, "ctl\x01x", at, first_name="C")
    assert people.call("GET", "/ctl%01x").status_code == 200
    gone = people.call("DELETE", "/ctl%01x", headers=people.root)
    assert gone.status_code == 200 and gone.json()["deleted"]["profiles"] == 1
    assert people.call("GET", "/ctl%01x").status_code == 404
