"""Identity, end to end through the real pipeline, push script, flush and chDB: visitors are
resolved identities (README "Visitors"), applied when reports are read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.buffer.rows import Pending, resolve_ids
from gatrix.clickhouse.store import Store
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.payloads import Hit
from gatrix.ingest.pipeline import Context, Request, process_profile, process_track
from gatrix.ingest.salts import SESSION_TIMEOUT_MS, SaltBook
from gatrix.insights import live, reports
from gatrix.insights.identity import people_sql
from gatrix.insights.query import QueryParams, build_query
from gatrix.meta.projects import ClientInfo

from ..conftest import CHROME_UA
from .test_reports import CountingStore

T0 = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def buffer(redis: Redis, prefix: str) -> Buffer:
    return Buffer(redis, prefix)


@pytest.fixture
def ctx(sql_engine: Any, buffer: Buffer) -> Context:
    return Context(salts=SaltBook(sql_engine), geo=GeoLookup(), keys=buffer.keys)


@pytest.fixture
def project() -> str:
    return f"id-{uuid.uuid4().hex[:8]}"


class Sender:
    """One browser (address + user agent) of a project, or its backend."""

    def __init__(
        self, ctx: Context, project: str, ip: str, ua: str = CHROME_UA, backend: bool = False
    ) -> None:
        self.ctx, self.ip, self.ua, self.backend = ctx, ip, ua, backend
        self.client = ClientInfo("c1", project, "write", None, ("*",), "UTC")

    def _req(self, at: datetime) -> Request:
        return Request(
            client=self.client,
            server_side=self.backend,
            ip=self.ip,
            user_agent=self.ua,
            browser=not self.backend,
            received_ms=int(at.timestamp() * 1000),
        )

    def page(self, at: datetime, path: str, profile: str = "", **extra: Any) -> Pending:
        reserved = {"__path": f"https://a.io{path}", "__timestamp": at.isoformat(), **extra}
        hit = Hit(type="track", name="screen_view", profile_id=profile, reserved=reserved)
        item = process_track(hit, self._req(at), self.ctx)
        assert isinstance(item, Pending)
        return item

    def identify(self, at: datetime, profile: str, **fields: Any) -> list[Pending]:
        hit = Hit(type="identify", profile_id=profile, **fields)
        return process_profile(hit, self._req(at), self.ctx)

    def alias(self, at: datetime, profile: str, alias: str) -> list[Pending]:
        hit = Hit(type="alias", profile_id=profile, alias=alias)
        return process_profile(hit, self._req(at), self.ctx)


async def send(buffer: Buffer, *groups: Pending | list[Pending]) -> list[tuple[str, str]]:
    """Push each group in order (as requests arriving one after another would) and return
    the (device, session) of every event."""
    out = []
    for group in groups:
        items = group if isinstance(group, list) else [group]
        ids, _ = await buffer.push(items, SESSION_TIMEOUT_MS)
        out += [resolve_ids(item, ids[n]) for n, item in enumerate(items) if item.session]
    return out


def day_query(project: str, **params: Any) -> Any:
    return build_query(
        project,
        "UTC",
        QueryParams(range="custom", start="2026-04-10", end="2026-04-10", **params),
        NOW,
    )


def kpis(store: Store, project: str, **params: Any) -> tuple[int, int, int]:
    m = reports.metrics(store, day_query(project, **params))
    return m["visitors"], m["sessions"], m["pageviews"]


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


async def test_logging_in_keeps_one_visitor_and_one_session(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    browser = Sender(ctx, project, "8.8.8.8")
    ids = await send(
        buffer,
        browser.page(minutes(0), "/"),
        browser.page(minutes(2), "/pricing"),
        browser.identify(minutes(3), "alice", email="alice@example.com"),
        browser.page(minutes(4), "/app", profile="alice"),
        browser.page(minutes(6), "/app/settings", profile="alice"),
    )
    await Flusher(buffer, store).run()
    assert len({device for device, _ in ids}) == 1 and "alice" not in {d for d, _ in ids}
    assert len({session for _, session in ids}) == 1
    assert kpis(store, project) == (1, 1, 4)
    # read from events rather than rollups, the device and the profile id are one person
    assert kpis(store, project, filters=["browser:is:Chrome"]) == (1, 1, 4)
    pages = reports.breakdown(store, day_query(project), "pages", limit=10)
    assert {r["value"]: r["visitors"] for r in pages["rows"]} == {
        "/": 1,
        "/pricing": 1,
        "/app": 1,
        "/app/settings": 1,
    }
    series = reports.timeseries(store, day_query(project, interval="hour"), "visitors")
    assert [p["value"] for p in series["points"] if p["value"]] == [1]
    entry = reports.breakdown(store, day_query(project), "entry_page", limit=10)
    assert [(r["value"], r["visitors"]) for r in entry["rows"]] == [("/", 1)]


async def test_anonymous_visits_before_the_login_count_for_the_person(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    # a morning visit, anonymous; the afternoon visit logs in: one person, two visits
    browser = Sender(ctx, project, "8.8.4.4")
    await send(buffer, browser.page(minutes(0), "/"), browser.page(minutes(1), "/docs"))
    await Flusher(buffer, store).run()
    assert kpis(store, project) == (1, 1, 2)
    await send(
        buffer,
        browser.page(minutes(120), "/login"),
        browser.identify(minutes(121), "bob"),
        browser.page(minutes(122), "/app", profile="bob"),
    )
    await Flusher(buffer, store).run()
    assert kpis(store, project) == (1, 2, 4)


async def test_one_person_on_two_devices_is_one_visitor(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    laptop = Sender(ctx, project, "1.2.3.4")
    phone = Sender(ctx, project, "5.6.7.8", ua=FIREFOX_UA)
    stranger = Sender(ctx, project, "9.9.9.9")
    await send(
        buffer,
        laptop.page(minutes(0), "/"),
        laptop.identify(minutes(1), "carol"),
        phone.page(minutes(30), "/m"),
        phone.identify(minutes(31), "carol"),
        phone.page(minutes(32), "/m/app", profile="carol"),
        stranger.page(minutes(40), "/"),
    )
    await Flusher(buffer, store).run()
    assert kpis(store, project) == (2, 3, 4)


async def test_live_counts_one_person_on_two_devices_once(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    # live reads only the last hour's events (as received now): times around the real clock
    now = datetime.now(UTC).replace(microsecond=0)
    laptop = Sender(ctx, project, "1.2.3.4")
    phone = Sender(ctx, project, "5.6.7.8", ua=FIREFOX_UA)
    await send(
        buffer,
        laptop.page(now - timedelta(minutes=4), "/"),
        laptop.identify(now - timedelta(minutes=4), "carol"),
        phone.page(now - timedelta(minutes=3), "/m"),
        phone.identify(now - timedelta(minutes=3), "carol"),
        phone.page(now - timedelta(minutes=2), "/m/app", profile="carol"),
    )
    await Flusher(buffer, store).run()
    # the phone's anonymous view, the laptop's and carol's are one person on the site now
    assert live.live_visitors(store, project, now) == 1
    # the feed's statement also tells whether anything is linked: two statements a poll
    counting = CountingStore(store)
    assert live.live(counting, project, now)["visitors"] == 1
    assert len(counting.sent) == 2
    # with nothing in the feed (all older than the window), the links are asked apart
    later = now + timedelta(minutes=40)
    counting.sent.clear()
    assert live.live(counting, project, later)["visitors"] == 0
    assert len(counting.sent) == 3


async def test_two_people_behind_one_address_and_browser_stay_two(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    # one office network, one browser build: the cookieless device is the same for both
    office = Sender(ctx, project, "10.0.0.1")
    ids = await send(
        buffer,
        office.page(minutes(0), "/"),
        office.identify(minutes(1), "dana"),
        office.page(minutes(2), "/app", profile="dana"),
        office.identify(minutes(3), "erin"),
        office.page(minutes(4), "/app", profile="erin"),
        office.page(minutes(5), "/app/billing", profile="dana"),
        office.page(minutes(6), "/app/team", profile="erin"),
    )
    await Flusher(buffer, store).run()
    sessions = [session for _, session in ids]
    # dana's visit (with the anonymous start) and erin's are told apart
    assert sessions[0] == sessions[1] == sessions[3] and sessions[2] == sessions[4]
    assert sessions[0] != sessions[2]
    assert kpis(store, project) == (2, 2, 5)


async def test_alias_merges_two_profile_ids(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    await send(
        buffer,
        backend.page(minutes(0), "/cart", profile="guest-42"),
        backend.page(minutes(50), "/account", profile="frank"),
    )
    await Flusher(buffer, store).run()
    assert kpis(store, project)[0] == 2
    await send(buffer, backend.alias(minutes(51), "frank", "guest-42"))
    await Flusher(buffer, store).run()
    assert kpis(store, project)[0] == 1
    # a device that logged in as the alias belongs to the surviving profile too
    browser = Sender(ctx, project, "203.0.113.7")
    await send(
        buffer,
        browser.page(minutes(60), "/"),
        browser.identify(minutes(61), "guest-42"),
    )
    await Flusher(buffer, store).run()
    assert kpis(store, project)[0] == 1


async def test_a_device_shared_by_two_people_is_the_first_ones_before_login(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    kiosk = Sender(ctx, project, "10.9.9.9")
    await send(
        buffer,
        kiosk.page(minutes(0), "/"),
        kiosk.identify(minutes(1), "gina"),
        kiosk.page(minutes(100), "/"),
        kiosk.identify(minutes(101), "hank"),
        kiosk.page(minutes(102), "/app", profile="hank"),
    )
    await Flusher(buffer, store).run()
    # the anonymous views of the kiosk are gina's (linked first); hank is the second
    assert kpis(store, project) == (2, 2, 3)


async def test_a_back_dated_event_cannot_take_over_an_identified_device(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    browser = Sender(ctx, project, "198.51.100.4")
    ids = await send(
        buffer,
        browser.page(minutes(0), "/"),
        browser.identify(minutes(1), "walter"),
        browser.page(minutes(2), "/app", profile="walter"),
    )
    device = ids[0][0]
    # someone replays the device id with their own profile id, dated three weeks back: the
    # link counts from when it reached us, after walter's
    attacker = Sender(ctx, project, "203.0.113.66", ua=FIREFOX_UA)
    back = (minutes(3) - timedelta(days=21)).isoformat()
    await send(
        buffer,
        attacker.page(minutes(3), "/x", profile="mallory", __deviceId=device, __timestamp=back),
    )
    await Flusher(buffer, store).run()
    assert kpis(store, project) == (1, 1, 2)  # today: walter's visit only, still his


async def test_a_chosen_device_id_is_never_a_profile_id(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    browser = Sender(ctx, project, "198.51.100.9")
    ids = await send(
        buffer,
        backend.page(minutes(0), "/billing", profile="bob"),
        # an anonymous page claiming bob's name as its device, and one linking a device
        # named after carol to the sender's own profile
        browser.page(minutes(1), "/", __deviceId="bob"),
        backend.page(minutes(2), "/billing", profile="carol"),
        browser.page(minutes(3), "/", profile="mallory", __deviceId="carol"),
    )
    await Flusher(buffer, store).run()
    assert ids[0][1] != ids[1][1]  # bob's visit is not joined
    # bob, carol, the anonymous device named "bob", and mallory (with the device named
    # "carol"): without the two key spaces, 2
    assert kpis(store, project)[0] == 4


def _people(store: Store, project: str, stored_map: bool) -> list[tuple[int, int]]:
    sql = f"SELECT * FROM ({people_sql(store.db, stored_map=stored_map)}) ORDER BY key_hash"
    return [tuple(r) for r in store.query_rows(sql, {"project": project})]


async def test_the_stored_map_resolves_as_the_links_do_and_is_backfilled(
    buffer: Buffer, ctx: Context, store: Store, project: str
) -> None:
    """The reports read each key's first link from `identity_map`: the same people as the
    links grouped at query time (first link wins, one alias step, a cycle ignored), and
    an upgrade fills it from the links already stored."""
    backend = Sender(ctx, project, "192.0.2.1", ua="", backend=True)
    kiosk = Sender(ctx, project, "10.9.9.9")
    await send(
        buffer,
        kiosk.page(minutes(0), "/"),
        kiosk.identify(minutes(1), "gina"),
        kiosk.identify(minutes(101), "hank"),
        backend.page(minutes(2), "/a", profile="q"),
        backend.alias(minutes(3), "p", "q"),
        backend.alias(minutes(4), "q", "p"),  # a cycle: the earlier alias stands
        backend.alias(minutes(5), "q", "r"),
        backend.alias(minutes(6), "gina", "guest-1"),
        backend.page(minutes(7), "/b", profile="p"),
    )
    await Flusher(buffer, store).run()
    grouped = _people(store, project, stored_map=False)
    assert len(grouped) == 5  # the kiosk, guest-1, p, q and r
    assert _people(store, project, stored_map=True) == grouped
    assert kpis(store, project)[0] == 2  # the kiosk is gina's; p, q and r are one person
    # data stored before migration 0009: the map is empty until its backfill runs
    store.command(
        f"ALTER TABLE {store.db}.identity_map DELETE WHERE project_id = {{p:String}} "
        "SETTINGS mutations_sync = 1",
        {"p": project},
    )
    assert _people(store, project, stored_map=True) == []
    assert kpis(store, project)[0] == 3
    (backfill,) = [
        s
        for version, _, statements in store.migration_statements()
        if version == 9
        for s in statements
        if s.startswith("INSERT INTO")
    ]
    # every project's links again: a link already in the map merges with itself
    store.command(backfill)
    assert _people(store, project, stored_map=True) == grouped
    assert kpis(store, project)[0] == 2
