"""People, end to end through the real pipeline, flush and chDB: the list, search, one
person's page with the events their device sent before the identify, and erasure (README
"People")."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.clickhouse.store import Store
from gatrix.ingest.payloads import Hit
from gatrix.ingest.pipeline import Context, process_profile
from gatrix.insights.erase import erase_person
from gatrix.insights.identity import KEY_HASH, SOURCE_HASH
from gatrix.insights.people import (
    EXACT_MATCHES,
    PeopleQuery,
    _matching_ids,
    _walk,
    _walk_matched,
    list_people,
)
from gatrix.insights.person import Cursor, InvalidPerson, get_person
from gatrix.insights.query import InvalidQuery

from .test_identity import FIREFOX_UA, Sender, buffer, ctx, kpis, minutes, send  # noqa: F401


@pytest.fixture
def project() -> str:
    return f"pp-{uuid.uuid4().hex[:8]}"


def increment(sender: Sender, at: Any, profile: str, prop: str, value: float) -> list[Any]:
    hit = Hit(type="increment", profile_id=profile, property=prop, value=value)
    return process_profile(hit, sender._req(at), sender.ctx)


@pytest.fixture
async def people(buffer: Buffer, ctx: Context, store: Store, project: str) -> str:  # noqa: F811
    """alice logs in on her laptop; a kiosk is gina's (linked first) and later hank's; a
    backend tracks api-user without identifying; guest-42 is aliased to frank; a stranger
    never logs in."""
    laptop = Sender(ctx, project, "8.8.8.8")
    kiosk = Sender(ctx, project, "10.9.9.9", ua=FIREFOX_UA)
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    stranger = Sender(ctx, project, "9.9.9.9")
    await send(
        buffer,
        laptop.page(minutes(0), "/"),
        laptop.page(minutes(2), "/pricing"),
        laptop.identify(
            minutes(3),
            "alice",
            email="alice@example.com",
            first_name="Alice",
            last_name="Liddell",
            properties={"plan": "pro"},
        ),
        laptop.page(minutes(4), "/app", profile="alice"),
        laptop.page(minutes(6), "/app/settings", profile="alice"),
        increment(laptop, minutes(7), "alice", "logins", 2),
        kiosk.page(minutes(10), "/"),
        kiosk.identify(minutes(11), "gina", email="gina@corp.test"),
        kiosk.page(minutes(12), "/app", profile="gina"),
        backend.page(minutes(20), "/api", profile="api-user"),
        stranger.page(minutes(30), "/"),
        backend.page(minutes(40), "/cart", profile="guest-42"),
        backend.alias(minutes(41), "frank", "guest-42"),
        backend.page(minutes(41), "/account", profile="frank"),
        kiosk.page(minutes(100), "/"),
        kiosk.identify(minutes(101), "hank"),
        kiosk.page(minutes(102), "/app", profile="hank"),
    )
    await Flusher(buffer, store).run()
    return project


def listed(store: Store, project: str, **params: Any) -> list[str]:
    return [r["id"] for r in list_people(store, PeopleQuery(project, **params))["rows"]]


async def test_the_list_holds_identified_and_event_only_people_by_last_seen(
    store: Store, people: str
) -> None:
    out = list_people(store, PeopleQuery(people))
    assert [r["id"] for r in out["rows"]] == ["hank", "gina", "frank", "api-user", "alice"]
    assert out["has_more"] is False
    alice = out["rows"][-1]
    assert alice["name"] == "Alice Liddell" and alice["email"] == "alice@example.com"
    # two anonymous views before the login and two after: one person, one visit
    assert (alice["events"], alice["sessions"]) == (4, 1)
    assert alice["first_seen"].startswith("2026-04-10T09:00")
    assert alice["last_seen"].startswith("2026-04-10T09:06")  # a counter is not a visit
    gina = out["rows"][1]
    assert (gina["events"], gina["sessions"]) == (3, 2)  # the kiosk's anonymous views are hers
    assert listed(store, people, sort="events")[:2] == ["alice", "gina"]
    first = list_people(store, PeopleQuery(people, limit=2))
    second = list_people(store, PeopleQuery(people, limit=2, page=2))
    third = list_people(store, PeopleQuery(people, limit=2, page=3))
    assert [r["id"] for r in first["rows"] + second["rows"] + third["rows"]] == listed(
        store, people
    )
    assert first["has_more"] and second["has_more"] and not third["has_more"]


async def test_search_by_id_email_name_and_property_value(store: Store, people: str) -> None:
    assert listed(store, people, q="ALICE@example") == ["alice"]
    assert listed(store, people, q="liddell") == ["alice"]
    assert listed(store, people, q="Alice L") == ["alice"]
    assert listed(store, people, q="pro") == ["alice"]  # the plan property
    assert listed(store, people, q="api-") == ["api-user"]
    assert listed(store, people, q="guest") == ["frank"]  # an alias id finds its person
    assert listed(store, people, q="corp.test") == ["gina"]
    assert listed(store, people, q="nobody") == []
    assert listed(store, people, q="'; DROP TABLE x --") == []


async def test_a_broad_search_walks_its_matches_in_the_order_of_the_whole_list(
    store: Store, people: str
) -> None:
    """Broad searches walk only the matching people's keys; they must meet the same people in
    the same order as walking everyone: the kiosk is linked to hank too, but it is gina's
    (linked first), so it must neither bring hank forward nor be dropped from gina."""
    everyone = listed(store, people)
    for q in ("n", "a", "e", "i", "guest", "corp", "hank", "nobody"):
        matched = _matching_ids(store, people, q, 100)
        walked = _walk_matched(store, people, 10, matched)
        assert walked == _walk(store, people, 10, q), q
        assert walked == [p for p in everyone if p in walked], q
        assert walked == listed(store, people, q=q), q
    assert _walk_matched(store, people, 10, _matching_ids(store, people, "n", 100)) == [
        "hank",
        "gina",
        "frank",
    ]
    assert _walk_matched(store, people, 2, _matching_ids(store, people, "a", 100)) == [
        "hank",
        "gina",
    ]


async def test_a_broad_search_reads_deeper_until_it_has_its_page(store: Store, people: str) -> None:
    # one row at first: every answer needs further rounds, which must not skip anyone
    for q in ("n", "a", "e", "guest"):
        matched = _matching_ids(store, people, q, 100)
        for want in (1, 2, 3, 10):
            deep = _walk_matched(store, people, want, matched, batch=1)
            assert deep == _walk(store, people, want, q), (q, want)


def test_a_search_matching_thousands_pages_them_by_last_seen(store: Store, project: str) -> None:
    """More matches than are aggregated one by one: the list walks them, newest first."""
    start = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        json.dumps(
            {
                "project_id": project,
                "profile_id": f"member-{n:04d}",
                "email": f"member{n}@club.test",
                "updated_at": (start + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.000"),
            }
        ).encode()
        for n in range(EXACT_MATCHES + 100)
    ]
    store.insert_json_rows("profiles", rows, f"t-{uuid.uuid4()}")
    newest = [f"member-{n:04d}" for n in range(EXACT_MATCHES + 99, -1, -1)]
    first = list_people(store, PeopleQuery(project, q="CLUB.test"))
    assert [r["id"] for r in first["rows"]] == newest[:50] and first["has_more"]
    assert first["rows"][0]["email"] == f"member{EXACT_MATCHES + 99}@club.test"
    assert listed(store, project, q="club.test", page=3) == newest[100:150]
    # 1,111 matches (1, 10-19, 100-199, 1000-1999) are aggregated one by one: the same order
    assert listed(store, project, q="member1", limit=100) == [
        f"member-{n:04d}" for n in range(1999, 1899, -1)
    ]


def test_bad_list_parameters_are_refused() -> None:
    for bad in ({"sort": "name"}, {"limit": 0}, {"limit": 101}, {"page": 0}, {"q": "x" * 201}):
        with pytest.raises(InvalidQuery):
            PeopleQuery("p", **bad)


async def test_the_person_page_holds_the_events_before_the_login(store: Store, people: str) -> None:
    alice = get_person(store, people, "alice")
    assert alice is not None
    assert [e["path"] for e in alice["events"]] == ["/app/settings", "/app", "/pricing", "/"]
    assert alice["properties"] == {"plan": "pro"}
    assert alice["counters"] == {"logins": 2.0}
    assert [d["browser"] for d in alice["devices"]] == ["Chrome"]
    assert alice["aliases"] == [] and alice["has_more"] is False
    page = get_person(store, people, "alice", limit=3)
    assert page is not None and page["has_more"]
    older = get_person(store, people, "alice", before=_at(page["next_before"]), limit=3)
    assert older is not None and [e["path"] for e in older["events"]] == ["/"]
    frank = get_person(store, people, "guest-42")  # an alias id shows its person
    assert frank is not None and frank["id"] == "frank" and frank["aliases"] == ["guest-42"]
    assert [e["path"] for e in frank["events"]] == ["/account", "/cart"]
    # hank used the kiosk after gina: its anonymous view before his login is gina's
    hank = get_person(store, people, "hank")
    assert hank is not None and [e["path"] for e in hank["events"]] == ["/app"]
    assert get_person(store, people, "nobody") is None
    stranger_device = get_person(store, people, "alice")["devices"][0]["id"]  # type: ignore[index]
    assert get_person(store, people, stranger_device) is not None  # a device resolves to alice
    with pytest.raises(InvalidPerson):
        get_person(store, people, "x" * 201)


def _at(cursor: str) -> Cursor:
    return Cursor.parse(cursor)


def _rollups(store: Store, project: str) -> dict[str, Any]:
    db, p = store.db, {"project": project}
    hourly = store.query_rows(
        f"SELECT uniqMerge(visitors), sum(pageviews), sum(custom_events) FROM {db}.hourly "
        "WHERE project_id = {project:String}",
        p,
    )[0]
    pages = store.query_rows(
        f"SELECT path, uniqMerge(visitors), sum(pageviews) FROM {db}.page_hourly "
        "WHERE project_id = {project:String} GROUP BY path ORDER BY path",
        p,
    )
    sessions = store.query_rows(
        f"SELECT session_id, sum(pageviews), min(first_at) FROM {db}.sessions "
        "WHERE project_id = {project:String} GROUP BY session_id ORDER BY session_id",
        p,
    )
    keys = store.query_rows(
        f"SELECT DISTINCT hour, key_hash FROM {db}.visitor_hourly "
        "WHERE project_id = {project:String} ORDER BY hour, key_hash",
        p,
    )
    first_links = store.query_rows(
        f"SELECT alias, source_hash, first_link FROM {db}.identity_map FINAL "
        "WHERE project_id = {project:String} ORDER BY alias, source_hash",
        p,
    )
    return {
        "hourly": tuple(hourly),
        "pages": pages,
        "sessions": sessions,
        "keys": keys,
        "first_links": first_links,
    }


def _from_events(store: Store, project: str) -> dict[str, Any]:
    db, p = store.db, {"project": project}
    pv = "name IN ('screen_view', 'page_view', 'pageview')"
    hourly = store.query_rows(
        f"SELECT uniq(device_id), countIf({pv}), countIf(NOT {pv}) FROM {db}.events "
        "WHERE project_id = {project:String}",
        p,
    )[0]
    pages = store.query_rows(
        f"SELECT path, uniq(device_id), count() FROM {db}.events "
        f"WHERE project_id = {{project:String}} AND {pv} GROUP BY path ORDER BY path",
        p,
    )
    sessions = store.query_rows(
        f"SELECT session_id, countIf({pv}), min(created_at) FROM {db}.events "
        "WHERE project_id = {project:String} GROUP BY session_id ORDER BY session_id",
        p,
    )
    keys = store.query_rows(
        f"SELECT DISTINCT toStartOfHour(created_at) AS hour, {KEY_HASH} AS key_hash "
        f"FROM {db}.events WHERE project_id = {{project:String}} ORDER BY hour, key_hash",
        p,
    )
    # each linked key's earliest link, from the links that remain
    first_links = store.query_rows(
        f"SELECT kind = 'alias' AS alias, {SOURCE_HASH} AS source_hash, "
        "min((linked_at, cityHash64(target))) FROM "
        f"{db}.identity_links WHERE project_id = {{project:String}} "
        "GROUP BY alias, source_hash ORDER BY alias, source_hash",
        p,
    )
    return {
        "hourly": tuple(hourly),
        "pages": pages,
        "sessions": sessions,
        "keys": keys,
        "first_links": first_links,
    }


async def test_erasing_a_person_removes_exactly_their_rows(store: Store, people: str) -> None:
    before = kpis(store, people)
    assert before == (6, 7, 12)  # visitors, sessions, page views
    gina_events = 3  # two anonymous kiosk views (hers: linked first) and one logged in
    out = erase_person(store, people, "gina")
    assert out is not None and out["id"] == "gina"
    deleted = out["deleted"]
    assert deleted["events"] == gina_events
    assert deleted["profiles"] == 1 and deleted["profile_counters"] == 0
    assert deleted["identity_links"] >= 1
    assert deleted["sessions"] >= 2
    # visitor_hourly loses the rows of her two keys (the kiosk's and her profile id's, an
    # hour each at least) and no one else's: checked against the events below
    assert deleted["visitor_hourly"] >= 2
    # hank shared the kiosk: his event stays, the anonymous one before it (gina's) went
    assert kpis(store, people) == (5, 6, 9)
    assert get_person(store, people, "gina") is None
    hank = get_person(store, people, "hank")
    assert hank is not None and [e["path"] for e in hank["events"]] == ["/app"]
    assert listed(store, people) == ["hank", "frank", "api-user", "alice"]
    assert listed(store, people, q="corp.test") == []
    # the rollups agree with the events that remain (the hour was rebuilt, not subtracted;
    # the kiosk's later events, hank's, keep their visitor keys)
    assert _rollups(store, people) == _from_events(store, people)
    alice = get_person(store, people, "alice")
    assert alice is not None and len(alice["events"]) == 4
    assert erase_person(store, people, "gina") is None


async def test_a_shared_device_goes_to_its_next_person_once_the_first_is_erased(
    buffer: Buffer,  # noqa: F811
    ctx: Context,  # noqa: F811
    store: Store,
    people: str,
) -> None:
    """The kiosk was linked to gina first, then to hank: with gina erased, it is hank's, so
    what it sends anonymously afterwards counts as hank, not as a visitor of its own."""
    assert erase_person(store, people, "gina") is not None
    assert kpis(store, people) == (5, 6, 9)
    kiosk = Sender(ctx, people, "10.9.9.9", ua=FIREFOX_UA)
    await send(buffer, kiosk.page(minutes(110), "/"))
    await Flusher(buffer, store).run()
    # one more page view, no more visitors: the view is hank's, in his visit
    assert kpis(store, people) == (5, 6, 10)
    hank = get_person(store, people, "hank")
    assert hank is not None and [e["path"] for e in hank["events"]] == ["/", "/app"]
    assert _rollups(store, people) == _from_events(store, people)


async def test_a_device_named_after_a_person_never_stands_for_them(
    buffer: Buffer,  # noqa: F811
    ctx: Context,  # noqa: F811
    store: Store,
    project: str,
) -> None:
    """A page may choose its device id: naming it after alice and identifying as mallory
    gives mallory a device called "alice", not alice's profile, sessions or erasure."""
    laptop = Sender(ctx, project, "8.8.8.8")
    attacker = Sender(ctx, project, "6.6.6.6", ua=FIREFOX_UA)
    await send(
        buffer,
        laptop.page(minutes(0), "/"),
        laptop.identify(minutes(1), "alice", email="alice@victim.test", first_name="Alice"),
        laptop.page(minutes(2), "/buy", profile="alice"),
        attacker.page(minutes(5), "/x", profile="mallory", __deviceId="alice"),
    )
    await Flusher(buffer, store).run()
    alice = get_person(store, project, "alice")
    assert alice is not None and alice["id"] == "alice"
    assert alice["email"] == "alice@victim.test"
    assert [e["path"] for e in alice["events"]] == ["/buy", "/"]
    mallory = get_person(store, project, "mallory")
    assert mallory is not None and mallory["email"] == "" and mallory["name"] == ""
    assert [e["path"] for e in mallory["events"]] == ["/x"]
    rows = {r["id"]: r for r in list_people(store, PeopleQuery(project))["rows"]}
    assert rows["alice"]["email"] == "alice@victim.test" and rows["alice"]["events"] == 2
    assert rows["mallory"]["email"] == "" and rows["mallory"]["events"] == 1
    assert listed(store, project, q="victim") == ["alice"]
    assert listed(store, project, q="victim", sort="events") == ["alice"]
    # erasing mallory takes mallory's event only; alice keeps everything
    out = erase_person(store, project, "mallory")
    assert out is not None and out["id"] == "mallory"
    assert out["deleted"]["events"] == 1 and out["deleted"]["profiles"] == 0
    alice_after = get_person(store, project, "alice")
    assert alice_after is not None and alice_after["email"] == "alice@victim.test"
    assert [e["path"] for e in alice_after["events"]] == ["/buy", "/"]


async def test_two_ids_aliased_to_each_other_keep_the_earlier_alias(
    buffer: Buffer,  # noqa: F811
    ctx: Context,  # noqa: F811
    store: Store,
    project: str,
) -> None:
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    await send(
        buffer,
        backend.page(minutes(0), "/a", profile="q"),
        backend.alias(minutes(1), "p", "q"),  # q is p from now on
        backend.alias(minutes(2), "q", "p"),  # a cycle: ignored, the earlier alias stands
        backend.alias(minutes(3), "q", "r"),  # r → q → p (one step from r is q's person)
        backend.page(minutes(4), "/b", profile="p"),
    )
    await Flusher(buffer, store).run()
    for name in ("p", "q", "r"):
        person = get_person(store, project, name)
        assert person is not None and person["id"] == "p", name
    assert listed(store, project) == ["p"]
    assert kpis(store, project)[0] == 1  # the reports count the same one person


async def test_events_that_share_a_time_are_all_reachable_page_by_page(
    buffer: Buffer,  # noqa: F811
    ctx: Context,  # noqa: F811
    store: Store,
    project: str,
) -> None:
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    same = minutes(5)
    await send(buffer, *[backend.page(same, f"/step{n}", profile="tie") for n in range(5)])
    await Flusher(buffer, store).run()
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = get_person(store, project, "tie", before=cursor, limit=2)
        assert page is not None
        seen += [e["path"] for e in page["events"]]
        if not page["has_more"]:
            break
        cursor = Cursor.parse(page["next_before"])
    assert sorted(seen) == [f"/step{n}" for n in range(5)]


async def test_ids_with_slashes_and_dots_have_pages(
    buffer: Buffer,  # noqa: F811
    ctx: Context,  # noqa: F811
    store: Store,
    project: str,
) -> None:
    from gatrix.web.people import person_path

    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    ids = ["team/42", "..", ".", "person", "../admin"]
    await send(buffer, *[backend.page(minutes(n), "/", profile=i) for n, i in enumerate(ids)])
    await Flusher(buffer, store).run()
    for person_id in ids:
        found = get_person(store, project, person_id)
        assert found is not None and found["id"] == person_id
        assert person_path(person_id).startswith("person?id=")
    assert person_path("alice smith") == "alice%20smith"
