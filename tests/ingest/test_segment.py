"""`POST /v1/*`: Segment-spec messages (as Segment's and RudderStack's server libraries send
them) → rows, write keys, retries stored once, gzip, clock skew."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gatrix.clickhouse.store import Store
from gatrix.insights.profiles import get_profile
from gatrix.meta.projects import NewClient

from ..conftest import event_rows, wait_events, wait_for

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track(**extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon-1",
        "userId": "user-7",
        "messageId": str(uuid.uuid4()),
        "properties": {"revenue": 9.99, "currency": "USD", "items": [{"sku": "A"}]},
        "context": {
            "ip": "8.8.8.8",
            "userAgent": IPHONE_UA,
            "locale": "ko-KR",
            "page": {
                "url": "https://shop.example.com/checkout?utm_source=mail",
                "referrer": "https://www.bing.com/",
                "title": "Checkout",
            },
        },
        **extra,
    }


def test_track_with_secret_maps_context_page_revenue_ip_and_user_agent(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    auth = (server_project.client_id, server_project.client_secret)
    reply = http.post("/v1/track", json=track(), auth=auth)
    assert reply.status_code == 200 and reply.json() == {"success": True}
    [row] = wait_events(store, server_project.project_id, 1)
    assert (row["name"], row["path"], row["title"], row["utm_source"]) == (
        "Order Completed",
        "/checkout",
        "Checkout",
        "mail",
    )
    assert (row["referrer_type"], row["revenue"], row["language"]) == ("search", 9.99, "ko-KR")
    assert row["properties"] == {"currency": "USD", "items": '[{"sku":"A"}]'}
    assert (row["device_id"], row["profile_id"], row["sdk_name"]) == ("anon-1", "user-7", "segment")
    assert row["os"] == "iOS" and row["country"] == "US"  # the visitor's, not the backend's


def test_write_key_alone_is_accepted_but_not_trusted_with_the_visitor(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    # what analytics-node sends: the write key as the Basic user, an empty password
    reply = http.post("/v1/track", json=track(), auth=(server_project.client_id, ""))
    assert reply.status_code == 200
    [row] = wait_events(store, server_project.project_id, 1)
    assert row["country"] == "" and row["os"] != "iOS"  # context.ip / userAgent ignored
    # a write key written as "clientId:secret" arrives as user and "secret:" password
    both = f"{server_project.client_id}:{server_project.client_secret}"
    assert http.post("/v1/track", json=track(), auth=(both, "")).status_code == 200
    rows = wait_events(store, server_project.project_id, 2)
    assert [r["country"] for r in rows] == ["", "US"]


def test_a_retried_message_id_is_stored_once(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    auth = (server_project.client_id, server_project.client_secret)
    message = track()
    for _ in range(3):  # the library did not see our reply and sent it again
        assert http.post("/v1/track", json=message, auth=auth).status_code == 200
    batch = {"batch": [message, track(messageId="other")], "sentAt": _iso(datetime.now(UTC))}
    assert http.post("/v1/batch", json=batch, auth=auth).status_code == 200
    wait_events(store, server_project.project_id, 2)
    marker = track(event="marker")
    assert http.post("/v1/track", json=marker, auth=auth).status_code == 200
    rows = wait_events(store, server_project.project_id, 3)
    assert sorted(r["name"] for r in rows) == ["Order Completed", "Order Completed", "marker"]


def test_gzip_batch_with_skewed_clock_page_screen_identify_alias(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    # RudderStack's node library: gzip, originalTimestamp and sentAt from a clock a day ahead
    ahead = datetime.now(UTC) + timedelta(days=1)
    page = {
        "type": "page",
        "anonymousId": "anon-2",
        "name": "Docs",
        "properties": {"url": "https://shop.example.com/docs", "title": "Docs"},
        "originalTimestamp": _iso(ahead - timedelta(minutes=10)),
        "messageId": str(uuid.uuid4()),
    }
    screen = {"type": "screen", "userId": "user-9", "name": "Home", "messageId": "s-1"}
    identify = {
        "type": "identify",
        "userId": "user-9",
        "traits": {"email": "a@b.c", "firstName": "Ada", "plan": "pro"},
    }
    alias = {"type": "alias", "userId": "user-9", "previousId": "anon-2"}
    group = {"type": "group", "userId": "user-9", "groupId": "g-1"}
    body = {"batch": [page, screen, identify, alias, group], "sentAt": _iso(ahead)}
    reply = http.post(
        "/v1/batch",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
        auth=(server_project.client_id, server_project.client_secret),  # alias needs it
    )
    assert reply.status_code == 200, reply.text
    rows = wait_events(store, server_project.project_id, 2)
    by_name = {r["name"]: r for r in rows}
    viewed = by_name["pageview"]
    assert (viewed["path"], viewed["title"], viewed["device_id"]) == ("/docs", "Docs", "anon-2")
    assert viewed["properties"] == {"name": "Docs"}
    # originalTimestamp moved by the sender's skew: exactly 10 minutes before receipt
    assert viewed["received_at"] - viewed["created_at"] == timedelta(minutes=10)
    assert (by_name["screen_view"]["path"], by_name["screen_view"]["profile_id"]) == (
        "Home",
        "user-9",
    )
    profile = wait_for(lambda: get_profile(store, server_project.project_id, "user-9"))
    assert profile and (profile["email"], profile["first_name"]) == ("a@b.c", "Ada")
    assert profile["properties"] == {"plan": "pro"}
    links = wait_for(
        lambda: store.query_rows(
            "SELECT source, target FROM gatrix.identity_links "
            "WHERE project_id = {p:String} AND kind = 'alias'",
            {"p": server_project.project_id},
        )
    )
    assert [tuple(link) for link in links] == [("anon-2", "user-9")]


def test_identify_with_both_ids_links_the_device_to_the_person(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    # analytics.identify() after a login: the anonymous device's earlier visits are the person's
    identify = {
        "type": "identify",
        "userId": "user-42",
        "anonymousId": "anon-42",
        "traits": {"email": "x@y.z", "__deviceId": "someone-else"},
    }
    reply = http.post("/v1/identify", json=identify, auth=(server_project.client_id, ""))
    assert reply.status_code == 200, reply.text
    links = wait_for(
        lambda: store.query_rows(
            "SELECT source, target, kind FROM gatrix.identity_links WHERE project_id = {p:String}",
            {"p": server_project.project_id},
        )
    )
    assert [tuple(link) for link in links] == [("anon-42", "user-42", "device")]
    profile = wait_for(lambda: get_profile(store, server_project.project_id, "user-42"))
    assert profile and profile["email"] == "x@y.z" and profile["properties"] == {}


def test_bad_input_is_a_json_4xx_and_stores_nothing(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    auth = (server_project.client_id, "")
    assert http.post("/v1/track", json=track()).json()["error"] == "missing_write_key"
    wrong = http.post("/v1/track", json=track(), auth=("nobody", ""))
    assert wrong.status_code == 401 and wrong.json()["error"] == "unknown_client"
    secret = http.post("/v1/track", json=track(), auth=(server_project.client_id, "sec_bad"))
    assert secret.status_code == 401 and secret.json()["error"] == "invalid_secret"
    for path, body, code in [
        ("/v1/track", {"event": "x"}, "missing_field"),
        ("/v1/track", {"anonymousId": "a"}, "missing_field"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "properties": 3}, "invalid_properties"),
        ("/v1/batch", {"batch": {}}, "invalid_body"),
        ("/v1/batch", {"batch": [track(), {"type": "nope"}]}, "invalid_type"),
        ("/v1/alias", {"userId": "u"}, "missing_field"),
        ("/v1/track", {"anonymousId": "a\u0000b", "event": "x"}, "invalid_field"),
    ]:
        with_secret = (server_project.client_id, server_project.client_secret)
        reply = http.post(path, json=body, auth=with_secret if "alias" in path else auth)
        assert reply.status_code == 400, (path, body)
        assert reply.json()["error"] == code
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    reply = http.post("/v1/batch", content=bomb, headers={"content-encoding": "gzip"}, auth=auth)
    assert reply.status_code == 413
    assert http.post("/v1/track", content=b"{", auth=auth).json()["error"] == "invalid_json"
    assert event_rows(store, server_project.project_id) == []


def test_alias_needs_the_secret(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    """The write key is public (every page that embeds a tracker shows it): merging two
    people takes the secret, as on /track."""
    alias = {"userId": "victim", "previousId": "attacker"}
    for auth in ((server_project.client_id, ""), None):
        body = alias if auth else {**alias, "writeKey": server_project.client_id}
        reply = http.post("/v1/alias", json=body, auth=auth)
        assert reply.status_code == 403 and reply.json()["error"] == "alias_needs_secret"
    # inside a batch, the alias is dropped and the rest stored
    batch = {"batch": [{**alias, "type": "alias"}, track(event="kept")]}
    reply = http.post("/v1/batch", json=batch, auth=(server_project.client_id, ""))
    assert reply.status_code == 200
    rows = wait_events(store, server_project.project_id, 1)
    assert [r["name"] for r in rows] == ["kept"]
    links = store.query_rows(
        "SELECT count() FROM gatrix.identity_links WHERE project_id = {p:String} "
        "AND kind = 'alias'",
        {"p": server_project.project_id},
    )
    assert links == [(0,)]


def test_a_revenue_beyond_any_float_is_ignored_not_a_crash(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    # JSON integers are unbounded and decode as Python ints; float() of this one raises
    auth = (server_project.client_id, server_project.client_secret)
    body = json.dumps(track(properties={"revenue": 10**400, "plan": "pro"}))
    reply = http.post("/v1/track", content=body, auth=auth)
    assert reply.status_code == 200 and reply.json() == {"success": True}
    [row] = wait_events(store, server_project.project_id, 1)
    assert row["revenue"] == 0.0 and row["properties"]["plan"] == "pro"
