"""`/track` end to end over real HTTP: the OpenPanel SDK's exact requests → ClickHouse rows."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store
from gatrix.insights.profiles import get_profile
from gatrix.meta.projects import NewClient, create_client, create_project

from ..conftest import CHROME_UA, browser_headers, event_rows, wait_events, wait_for

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def sdk_page_view(path: str, referrer: str = "", title: str = "Products") -> dict[str, Any]:
    # exactly what @openpanel/web sends for a page view
    return {
        "type": "track",
        "payload": {
            "name": "screen_view",
            "properties": {"__path": path, "__title": title, "__referrer": referrer},
        },
    }


def test_sdk_page_view_is_enriched_into_clickhouse(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    headers = browser_headers(server_project.client_id) | {"user-agent": IPHONE_UA}
    body = sdk_page_view(
        "https://shop.example.com/products?utm_source=newsletter&utm_medium=email"
        "&utm_campaign=launch",
        referrer="https://news.ycombinator.com/item?id=1",
    )
    reply = http.post("/track", json=body, headers=headers)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["access-control-allow-origin"] == "https://shop.example.com"
    ids = reply.json()
    assert set(ids) == {"deviceId", "sessionId"} and ids["deviceId"] and ids["sessionId"]

    custom = {
        "type": "track",
        "payload": {
            "name": "add_to_cart",
            "properties": {
                "__path": "https://shop.example.com/products",
                "sku": "A-1",
                "qty": 2,
                "gift": True,
                "meta": {"color": "red"},
                "dropped": None,
            },
        },
    }
    assert http.post("/track", json=custom, headers=headers).json() == ids  # same session

    rows = wait_events(store, server_project.project_id, 2)
    view, cart = rows[0], rows[1]
    assert view["name"] == "screen_view" and cart["name"] == "add_to_cart"
    assert (view["path"], view["origin"], view["title"]) == (
        "/products",
        "https://shop.example.com",
        "Products",
    )
    assert (view["utm_source"], view["utm_medium"], view["utm_campaign"]) == (
        "newsletter",
        "email",
        "launch",
    )
    assert (view["referrer_name"], view["referrer_type"]) == ("Hacker News", "social")
    assert (view["browser"], view["os"], view["device"], view["brand"]) == (
        "Mobile Safari",
        "iOS",
        "mobile",
        "Apple",
    )
    assert (view["sdk_name"], view["sdk_version"]) == ("web", "1.0.1")
    assert str(view["device_id"]) == ids["deviceId"] and view["session_id"] == ids["sessionId"]
    assert cart["properties"] == {
        "sku": "A-1",
        "qty": "2",
        "gift": "true",
        "meta": '{"color":"red"}',
    }
    assert "__path" not in view["properties"]


def test_seed_quick_start_without_client_id_goes_to_default_project(
    server: Any, store: Store
) -> None:
    # The seed's curl has no client id: it lands in the configured default project.
    defaults = create_project(server.services.engine, "seed default", origins=["*"])
    server.services.ingest.config.default_client_id = defaults.client_id
    try:
        reply = httpx.post(
            f"{server.url}/track",
            headers={"Content-Type": "application/json"},
            content='{"type":"track","payload":{"name":"page_view","path":"/dashboard"}}',
        )
        assert reply.status_code == 200, reply.text
        [row] = wait_events(store, defaults.project_id, 1)
        assert (row["name"], row["path"]) == ("page_view", "/dashboard")
    finally:
        server.services.ingest.config.default_client_id = None
    reply = httpx.post(f"{server.url}/track", json={"type": "track", "payload": {"name": "x"}})
    assert reply.status_code == 401
    assert reply.json()["error"] == "missing_client_id"
    assert "openpanel-client-id" in reply.json()["detail"]


def test_identify_and_increment_update_the_profile(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    headers = browser_headers(server_project.client_id)
    calls = [
        {
            "type": "identify",
            "payload": {
                "profileId": "user-7",
                "firstName": "Grace",
                "email": "grace@example.com",
                "properties": {"plan": "team"},
            },
        },
        {"type": "increment", "payload": {"profileId": "user-7", "property": "visits"}},
        {"type": "increment", "payload": {"profileId": "user-7", "property": "visits", "value": 4}},
        {"type": "decrement", "payload": {"profileId": "user-7", "property": "visits", "value": 2}},
        {
            "type": "track",
            "payload": {
                "name": "login",
                "profileId": "user-7",
                "properties": {"__path": "https://shop.example.com/"},
            },
        },
    ]
    for call in calls:
        reply = http.post("/track", json=call, headers=headers)
        assert reply.status_code == 200, reply.text
    [event] = wait_events(store, server_project.project_id, 1)
    # the browser keeps its anonymous device; the person rides beside it, linked to it
    assert event["profile_id"] == "user-7" and event["device_id"] not in ("", "user-7")
    links = wait_for(
        lambda: store.query_rows(
            f"SELECT source, target, kind FROM {store.db}.identity_links FINAL "
            "WHERE project_id = {p:String}",
            {"p": server_project.project_id},
        )
    )
    assert links == [(event["device_id"], "user-7", "device")]
    profile = wait_for(
        lambda: (
            (p := get_profile(store, server_project.project_id, "user-7"))
            and p["counters"].get("visits") == 3.0
            and p
        )
    )
    assert profile["first_name"] == "Grace" and profile["email"] == "grace@example.com"
    assert profile["properties"] == {"plan": "team"}


def test_preflight_and_cors_headers(http: httpx.Client) -> None:
    reply = http.options(
        "/track",
        headers={
            "origin": "https://shop.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,openpanel-client-id,openpanel-sdk-name,openpanel-sdk-version",
        },
    )
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert "openpanel-client-id" in reply.headers["access-control-allow-headers"]
    assert reply.content == b""


def test_auth_failures_say_which(
    http: httpx.Client, server_project: NewClient, server_engine: Any, store: Store
) -> None:
    body = sdk_page_view("https://shop.example.com/")
    cases = [
        (browser_headers(str(uuid.uuid4())), 401, "unknown_client"),
        (
            browser_headers(server_project.client_id, origin="https://evil.example"),
            401,
            "origin_not_allowed",
        ),
        (
            {"content-type": "application/json", "openpanel-client-id": server_project.client_id},
            401,
            "missing_secret",
        ),
        (
            {
                "content-type": "application/json",
                "openpanel-client-id": server_project.client_id,
                "openpanel-client-secret": "sec_wrong",
            },
            401,
            "invalid_secret",
        ),
    ]
    for headers, status, code in cases:
        reply = http.post("/track", json=body, headers=headers)
        assert (reply.status_code, reply.json()["error"]) == (status, code), code
        assert reply.json()["detail"]
        assert reply.headers["access-control-allow-origin"]
    reader = create_client(server_engine, server_project.project_id, "read")
    reply = http.post("/track", json=body, headers=browser_headers(reader.client_id))
    assert (reply.status_code, reply.json()["error"]) == (403, "client_cannot_write")
    # wildcard origin rule from the project's settings
    reply = http.post(
        "/track",
        json=body,
        headers=browser_headers(server_project.client_id, origin="https://x.app.test"),
    )
    assert reply.status_code == 200
    wait_events(store, server_project.project_id, 1)
    assert len(event_rows(store, server_project.project_id)) == 1


def test_server_side_sender_with_secret(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    headers = {
        "content-type": "application/json",
        "user-agent": "node-fetch/3",
        "openpanel-client-id": server_project.client_id,
        "openpanel-client-secret": server_project.client_secret,
    }
    body = {
        "type": "track",
        "payload": {
            "name": "invoice_paid",
            "profileId": "acct-1",
            "properties": {"__ip": "81.2.69.142", "__revenue": 49.5, "amount": 49.5},
        },
    }
    assert http.post("/track", json=body, headers=headers).status_code == 200
    # clientId/clientSecret in the body work too
    in_body = {
        **body,
        "clientId": server_project.client_id,
        "clientSecret": server_project.client_secret,
    }
    reply = http.post(
        "/track", json=in_body, headers={"content-type": "application/json", "user-agent": "curl/8"}
    )
    assert reply.status_code == 200
    rows = wait_events(store, server_project.project_id, 2)
    assert rows[0]["country"] == "GB"  # __ip trusted from an authenticated backend
    assert rows[0]["revenue"] == 49.5


def test_spoofed_ip_from_browser_is_ignored(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    headers = browser_headers(server_project.client_id) | {"x-forwarded-for": "81.2.69.142"}
    body = sdk_page_view("https://shop.example.com/")
    body["payload"]["properties"]["__ip"] = "8.8.8.8"
    assert http.post("/track", json=body, headers=headers).status_code == 200
    [row] = wait_events(store, server_project.project_id, 1)
    assert row["country"] == ""  # loopback peer; neither header nor __ip is trusted


def test_bots_get_202_and_are_counted_not_stored(
    http: httpx.Client, server_project: NewClient, store: Store, server: Any
) -> None:
    headers = browser_headers(server_project.client_id) | {
        "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    reply = http.post("/track", json=sdk_page_view("https://shop.example.com/"), headers=headers)
    assert reply.status_code == 202 and reply.json() == {"dropped": "bot"}
    assert server.services.counters.totals[(server_project.project_id, "bot")] == 1
    ok = http.post(
        "/track",
        json=sdk_page_view("https://shop.example.com/x"),
        headers=browser_headers(server_project.client_id),
    )
    assert ok.status_code == 200
    rows = wait_events(store, server_project.project_id, 1)
    assert [r["path"] for r in rows] == ["/x"]


BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("malformed json", b'{"type": "track", ', 400, "invalid_json"),
    ("not utf-8", b"\xff\xfe\x00", 400, "invalid_json"),
    ("empty body", b"", 400, "invalid_json"),
    ("array", b"[]", 400, "invalid_body"),
    ("missing type", b'{"payload": {"name": "x"}}', 400, "invalid_type"),
    ("unknown type", b'{"type": "bogus", "payload": {}}', 400, "invalid_type"),
    (
        "alias without alias",
        b'{"type": "alias", "payload": {"profileId": "a"}}',
        400,
        "missing_field",
    ),
    (
        "alias of itself",
        b'{"type": "alias", "payload": {"profileId": "a", "alias": "a"}}',
        400,
        "invalid_field",
    ),
    ("payload not object", b'{"type": "track", "payload": "x"}', 400, "invalid_payload"),
    ("missing name", b'{"type": "track", "payload": {}}', 400, "missing_field"),
    ("empty name", b'{"type": "track", "payload": {"name": "  "}}', 400, "missing_field"),
    ("name not string", b'{"type": "track", "payload": {"name": {"a": 1}}}', 400, "invalid_field"),
    (
        "name too long",
        json.dumps({"type": "track", "payload": {"name": "n" * 201}}).encode(),
        400,
        "invalid_field",
    ),
    (
        "properties not object",
        b'{"type": "track", "payload": {"name": "x", "properties": [1]}}',
        400,
        "invalid_properties",
    ),
    (
        "too many properties",
        json.dumps(
            {
                "type": "track",
                "payload": {"name": "x", "properties": {f"k{i}": i for i in range(101)}},
            }
        ).encode(),
        400,
        "too_many_properties",
    ),
    (
        "empty property name",
        b'{"type":"track","payload":{"name":"x","properties":{"":1}}}',
        400,
        "invalid_properties",
    ),
    (
        "profileId object",
        b'{"type":"track","payload":{"name":"x","profileId":{}}}',
        400,
        "invalid_field",
    ),
    (
        "identify without profile",
        b'{"type":"identify","payload":{"firstName":"a"}}',
        400,
        "missing_field",
    ),
    (
        # a person the profiles API and erasure could never name
        "profileId with a control character",
        b'{"type":"identify","payload":{"profileId":"ctl\\u0001x","firstName":"c"}}',
        400,
        "invalid_field",
    ),
    (
        "track profileId with a newline",
        b'{"type":"track","payload":{"name":"x","profileId":"nl\\nx"}}',
        400,
        "invalid_field",
    ),
    (
        # a visitor the People pages could never open, as for profile ids
        "__deviceId with a NUL",
        b'{"type":"track","payload":{"name":"x","properties":{"__deviceId":"a\\u0000b"}}}',
        400,
        "invalid_field",
    ),
    (
        "__deviceId object",
        b'{"type":"track","payload":{"name":"x","properties":{"__deviceId":{"a":1}}}}',
        400,
        "invalid_field",
    ),
    (
        "identify __deviceId with a newline",
        b'{"type":"identify","payload":{"profileId":"p","properties":{"__deviceId":"d\\nx"}}}',
        400,
        "invalid_field",
    ),
    (
        "increment value text",
        b'{"type":"increment","payload":{"profileId":"a","property":"p","value":"3"}}',
        400,
        "invalid_field",
    ),
    (
        "increment value near the float limit",
        b'{"type":"increment","payload":{"profileId":"a","property":"p","value":1e308}}',
        400,
        "invalid_field",
    ),
    (
        "increment without property",
        b'{"type":"increment","payload":{"profileId":"a"}}',
        400,
        "missing_field",
    ),
    (
        "clientId not string",
        b'{"type":"track","payload":{"name":"x"},"clientId":5}',
        400,
        "invalid_field",
    ),
    (
        "body over 64 KB",
        json.dumps(
            {"type": "track", "payload": {"name": "x", "properties": {"blob": "x" * 70_000}}}
        ).encode(),
        413,
        "body_too_large",
    ),
]


@pytest.mark.parametrize(
    ("label", "body", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_gets_a_clear_4xx(
    http: httpx.Client, server_project: NewClient, label: str, body: bytes, status: int, code: str
) -> None:
    reply = http.post("/track", content=body, headers=browser_headers(server_project.client_id))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == code
    assert isinstance(reply.json()["detail"], str) and reply.json()["detail"]


def test_bad_input_never_reaches_clickhouse(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    for _label, body, _status, _code in BAD_BODIES:
        http.post("/track", content=body, headers=browser_headers(server_project.client_id))
    marker = http.post(
        "/track",
        json=sdk_page_view("https://shop.example.com/marker"),
        headers=browser_headers(server_project.client_id),
    )
    assert marker.status_code == 200
    rows = wait_events(store, server_project.project_id, 1)
    assert [r["path"] for r in rows] == ["/marker"]


def test_alias_is_for_backends_only(http: httpx.Client, server_project: NewClient) -> None:
    alias = {"type": "alias", "payload": {"profileId": "new-id", "alias": "old-id"}}
    browser = http.post("/track", json=alias, headers=browser_headers(server_project.client_id))
    assert browser.status_code == 403 and browser.json()["error"] == "alias_needs_secret"
    batch = http.post(
        "/track/batch", json=[alias], headers=browser_headers(server_project.client_id)
    )
    assert batch.json()["results"][0]["error"] == "alias_needs_secret"
    backend = {
        "openpanel-client-id": server_project.client_id,
        "openpanel-client-secret": server_project.client_secret,
    }
    assert http.post("/track", json=alias, headers=backend).status_code == 200


def test_batch_endpoint_per_item_results(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    good = [sdk_page_view(f"https://shop.example.com/b{i}") for i in range(5)]
    batch = [
        *good,
        {"type": "alias", "payload": {}},
        {"type": "track", "payload": {}},
        {"type": "identify", "payload": {"profileId": "u-b"}},
    ]
    reply = http.post("/track/batch", json=batch, headers=browser_headers(server_project.client_id))
    assert reply.status_code == 200
    out = reply.json()
    assert (out["accepted"], out["rejected"], out["dropped"]) == (6, 2, 0)
    assert [r["status"] for r in out["results"]] == [200] * 5 + [400, 400, 200]
    assert out["results"][5]["error"] == "missing_field"
    assert all(r["sessionId"] for r in out["results"][:5])
    rows = wait_events(store, server_project.project_id, 5)
    assert sorted(r["path"] for r in rows) == [f"/b{i}" for i in range(5)]


def test_batch_limits(http: httpx.Client, server_project: NewClient) -> None:
    headers = browser_headers(server_project.client_id)
    too_many = [sdk_page_view("https://shop.example.com/")] * 1001
    reply = http.post("/track/batch", json=too_many, headers=headers)
    assert (reply.status_code, reply.json()["error"]) == (400, "batch_too_large")
    reply = http.post("/track/batch", json={"type": "track"}, headers=headers)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_body")


def test_health_reports_every_part(http: httpx.Client) -> None:
    reply = http.get("/health")
    assert reply.status_code == 200
    report = reply.json()
    assert report["status"] == "ok"
    assert report["redis"]["ok"] and report["clickhouse"]["ok"] and report["database"]["ok"]
    assert set(report["buffer"]) == {
        "ok",
        "depth",
        "bytes",
        "high_water_bytes",
        "oldest_event_age_s",
        "claimed_batches",
        "dead_letters",
    }
    assert "last_flush" in report


def test_wrong_method(http: httpx.Client) -> None:
    reply = http.get("/track")
    assert reply.status_code == 405 and reply.json()["error"] == "method_not_allowed"


def test_browser_request_headers_are_echoed_for_unknown_client(http: httpx.Client) -> None:
    reply = http.post(
        "/track",
        json=sdk_page_view("https://a.io/"),
        headers=browser_headers(str(uuid.uuid4()), origin="https://a.io")
        | {"user-agent": CHROME_UA},
    )
    assert reply.status_code == 401
    assert reply.headers["access-control-allow-origin"] == "https://a.io"


def test_wrong_secrets_are_checked_a_bounded_number_of_times(
    http: httpx.Client, server_project: NewClient
) -> None:
    # each check is a deliberately slow scrypt: a batch of 1,000 wrong secrets must not cost
    # 1,000 of them (40 CPU-seconds taken from every other project)
    body = [
        {
            "type": "track",
            "payload": {"name": "x"},
            "clientId": server_project.client_id,
            "clientSecret": f"wrong-{n}",
        }
        for n in range(200)
    ]
    reply = http.post("/track/batch", json=body)
    statuses = [r["status"] for r in reply.json()["results"]]
    assert statuses.count(401) <= 20 and statuses.count(429) >= 180
    assert {r["error"] for r in reply.json()["results"] if r["status"] == 429} == {
        "too_many_invalid_secrets"
    }
    single = http.post(
        "/track",
        json={"type": "track", "payload": {"name": "x"}},
        headers={
            "openpanel-client-id": server_project.client_id,
            "openpanel-client-secret": server_project.client_secret,
        },
    )
    assert single.status_code == 429  # from the same address, the right one waits too...
    # ...but the budget is per sender: the project's backend elsewhere is not locked out
    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=str(http.base_url), transport=other_address) as backend:
        elsewhere = backend.post(
            "/track",
            json={"type": "track", "payload": {"name": "x"}},
            headers={
                "openpanel-client-id": server_project.client_id,
                "openpanel-client-secret": server_project.client_secret,
            },
        )
    assert elsewhere.status_code == 200, elsewhere.text


def test_concurrent_wrong_secrets_share_one_budget(server: Any, server_project: NewClient) -> None:
    def wrong(n: int) -> int:
        return httpx.post(
            f"{server.url}/track",
            json={"type": "track", "payload": {"name": "x"}},
            headers={
                "openpanel-client-id": server_project.client_id,
                "openpanel-client-secret": f"guess-{n}",
            },
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(wrong, range(60)))
    # all sent at once, they still get 20 checks between them, not one each
    assert statuses.count(401) <= 20 and statuses.count(429) >= 40, statuses


def test_an_event_is_stamped_when_its_request_arrived(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    """A request whose body is slow to come is stamped when it arrived, not when it was
    read: a sender's requests sent in order keep their order even when one waits longer
    (its body, its client's lookup)."""
    headers = browser_headers(server_project.client_id)
    started = threading.Event()

    def slow_body() -> Any:
        started.set()
        time.sleep(1.5)  # the headers are in; the body follows
        yield json.dumps({"type": "track", "payload": {"name": "first"}}).encode()

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(http.post, "/track", content=slow_body(), headers=headers)
        assert started.wait(10)
        time.sleep(0.5)
        second = http.post(
            "/track", json={"type": "track", "payload": {"name": "second"}}, headers=headers
        )
        assert second.status_code == 200 and first.result().status_code == 200
    rows = {r["name"]: r for r in wait_events(store, server_project.project_id, 2)}
    assert rows["first"]["created_at"] < rows["second"]["created_at"]
