"""Each enrichment step, table-driven, with exact inputs (time, salts, IPs are arguments)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gatrix.buffer.keys import RedisKeys
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.enrich.referrer import channel, parse_page, parse_referrer
from gatrix.ingest.enrich.useragent import is_bot, parse_user_agent
from gatrix.ingest.payloads import Hit
from gatrix.ingest.pipeline import (
    Context,
    Draft,
    Dropped,
    Request,
    parse_client_time,
    process_track,
    step_timestamp,
)
from gatrix.ingest.routes import TrustedProxies
from gatrix.ingest.salts import SaltBook, visitor_id
from gatrix.meta.projects import ClientInfo, hash_secret, origin_allowed, verify_secret

UA = {
    "chrome_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "safari_iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "firefox_linux": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "samsung_android": "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "android_tablet": "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "edge_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "gptbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "headless": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "curl": "curl/8.5.0",
    "python": "python-requests/2.32.3",
}


@pytest.mark.parametrize(
    ("ua", "browser", "os_name", "device"),
    [
        ("chrome_win", "Chrome", "Windows", "desktop"),
        ("safari_iphone", "Mobile Safari", "iOS", "mobile"),
        ("ipad", "Mobile Safari", "iOS", "tablet"),
        ("firefox_linux", "Firefox", "Ubuntu", "desktop"),
        ("samsung_android", "Chrome Mobile", "Android", "mobile"),
        ("android_tablet", "Chrome", "Android", "tablet"),
        ("edge_mac", "Edge", "Mac OS X", "desktop"),
    ],
)
def test_user_agent_parsing(ua: str, browser: str, os_name: str, device: str) -> None:
    info = parse_user_agent(UA[ua])
    assert (info.browser, info.os, info.device) == (browser, os_name, device)
    assert info.browser_version and info.browser_version[0].isdigit()


def test_user_agent_brand_and_model() -> None:
    iphone = parse_user_agent(UA["safari_iphone"])
    assert (iphone.brand, iphone.model) == ("Apple", "iPhone")
    samsung = parse_user_agent(UA["samsung_android"])
    assert samsung.brand == "Samsung" and samsung.model.startswith("SM-S918")


@pytest.mark.parametrize(
    ("ua", "bot"),
    [
        ("chrome_win", False),
        ("safari_iphone", False),
        ("firefox_linux", False),
        ("googlebot", True),
        ("bingbot", True),
        ("gptbot", True),
        ("headless", True),
        ("curl", True),
        ("python", True),
    ],
)
def test_bot_detection(ua: str, bot: bool) -> None:
    assert is_bot(UA[ua]) is bot


def test_empty_user_agent_is_a_bot() -> None:
    assert is_bot("") and is_bot("x")


@pytest.mark.parametrize(
    ("referrer", "page", "name", "kind"),
    [
        ("https://www.google.com/", "https://shop.example.com/", "Google", "search"),
        ("https://www.google.co.uk/search?q=x", "https://shop.example.com/", "Google", "search"),
        ("https://www.google.com.ar/", "https://shop.example.com/", "Google", "search"),
        ("https://duckduckgo.com/", "https://shop.example.com/", "DuckDuckGo", "search"),
        ("https://t.co/abc", "https://shop.example.com/", "X", "social"),
        ("https://news.ycombinator.com/item?id=1", "https://a.io/", "Hacker News", "social"),
        ("https://l.facebook.com/l.php", "https://a.io/", "Facebook", "social"),
        ("https://mail.google.com/mail/u/0/", "https://a.io/", "Gmail", "email"),
        ("https://chatgpt.com/", "https://a.io/", "ChatGPT", "ai"),
        ("https://www.perplexity.ai/search", "https://a.io/", "Perplexity", "ai"),
        ("https://m.youtube.com/watch?v=1", "https://a.io/", "YouTube", "video"),
        ("android-app://com.google.android.gm/", "https://a.io/", "Gmail", "email"),
        ("https://blog.someone.dev/post", "https://a.io/", "blog.someone.dev", "link"),
    ],
)
def test_referrer_classification(referrer: str, page: str, name: str, kind: str) -> None:
    ref = parse_referrer(referrer, parse_page(page).host)
    assert (ref.name, ref.type) == (name, kind)
    assert ref.url == referrer


@pytest.mark.parametrize(
    "referrer",
    ["https://shop.example.com/cart", "https://www.shop.example.com/", "/relative/path", "", "::"],
)
def test_same_site_and_relative_referrers_are_dropped(referrer: str) -> None:
    ref = parse_referrer(referrer, parse_page("https://shop.example.com/p").host)
    assert ref.name == "" and ref.type == "" and ref.url == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://shop.example.com/p?utm_source=nl&utm_medium=email&utm_campaign=spring"
            "&utm_term=shoes&utm_content=hero",
            {
                "utm_source": "nl",
                "utm_medium": "email",
                "utm_campaign": "spring",
                "utm_term": "shoes",
                "utm_content": "hero",
                "path": "/p",
                "origin": "https://shop.example.com",
            },
        ),
        ("https://a.io/?gclid=abc123", {"click_id_type": "google", "click_id": "abc123"}),
        ("https://a.io/x?fbclid=zz&UTM_SOURCE=fb", {"click_id_type": "meta", "utm_source": "fb"}),
        ("https://a.io/?msclkid=m1", {"click_id_type": "microsoft", "click_id": "m1"}),
        ("https://a.io/?ref=producthunt", {"utm_source": "producthunt"}),
        ("/dashboard?tab=1", {"path": "/dashboard", "query": "tab=1", "origin": ""}),
        ("https://a.io", {"path": "/", "host": "a.io"}),
    ],
)
def test_page_url_utm_and_click_ids(url: str, expected: dict[str, str]) -> None:
    page = parse_page(url)._asdict()
    for key, value in expected.items():
        assert page[key] == value, key


def test_channel_paid_beats_referrer_and_email_medium() -> None:
    google = parse_referrer("https://www.google.com/", "a.io")
    assert channel(google, parse_page("https://a.io/?gclid=1")) == "paid"
    assert channel(google, parse_page("https://a.io/?utm_medium=cpc")) == "paid"
    assert channel(google, parse_page("https://a.io/")) == "search"
    none = parse_referrer("", "a.io")
    assert channel(none, parse_page("https://a.io/?utm_medium=newsletter")) == "email"
    assert channel(none, parse_page("https://a.io/")) == ""


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
WINDOW = SimpleNamespace(max_event_age_ms=31 * 86_400_000)


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("2026-03-01T11:00:00.000Z", NOW_MS - 3_600_000),  # past: kept
        ("2026-03-01T12:00:30Z", NOW_MS + 30_000),  # 30 s ahead: clock skew, kept
        ("2026-03-01T12:05:00Z", NOW_MS),  # 5 min ahead: server time
        ("not a date", NOW_MS),
        (NOW_MS - 1000, NOW_MS - 1000),  # epoch ms
        ((NOW_MS - 2000) / 1000, NOW_MS - 2000),  # epoch seconds
        ("1970-01-01T00:00:00Z", NOW_MS),  # before 2000: invalid
        (True, NOW_MS),
        (None, NOW_MS),
        ("2026-01-29T12:00:00Z", NOW_MS - 31 * 86_400_000),  # the window's edge: kept
    ],
)
def test_client_timestamp_rules(value: Any, expected_ms: int) -> None:
    req = Request(
        client=_client(), server_side=False, ip="1.2.3.4", user_agent="x", received_ms=NOW_MS
    )
    d = Draft(hit=Hit(type="track", name="x", reserved={"__timestamp": value}), req=req)
    assert step_timestamp(d, WINDOW) is None  # type: ignore[arg-type]
    assert d.ts_ms == expected_ms


@pytest.mark.parametrize("value", ["2026-01-29T11:59:59Z", "2001-05-01T00:00:00Z", 1e12])
def test_client_time_older_than_the_window_is_dropped_with_its_reason(value: Any) -> None:
    req = Request(
        client=_client(), server_side=False, ip="1.2.3.4", user_agent="x", received_ms=NOW_MS
    )
    d = Draft(hit=Hit(type="track", name="x", reserved={"__timestamp": value}), req=req)
    assert step_timestamp(d, WINDOW) == "timestamp_too_old"  # type: ignore[arg-type]


def test_parse_client_time_variants() -> None:
    assert parse_client_time("2026-03-01T12:00:00+09:00") == NOW_MS - 9 * 3_600_000
    assert parse_client_time("") is None
    assert parse_client_time({"a": 1}) is None
    # the forms senders use, with the ISO date tried first
    assert parse_client_time("2026-11-01T10:00:00.123Z") == 1_793_527_200_123
    assert parse_client_time(" 2026-11-01 10:00:00 ") == 1_793_527_200_000  # naive: UTC
    assert parse_client_time("1700000000") == parse_client_time(1_700_000_000_000)
    assert parse_client_time("1700000000.5") == 1_700_000_000_500
    # a Z after a date alone is UTC too; digits that are not ASCII ("²") are no epoch
    assert parse_client_time("2026-11-01Z") == 1_793_491_200_000
    for unusable in ("20261101", "1999-12-31T23:59:59Z", "2026-13-01", "12.5.5", "  ", True, "²"):
        assert parse_client_time(unusable) is None, unusable


def _client(origins: tuple[str, ...] = ("shop.example.com",)) -> ClientInfo:
    return ClientInfo("c1", "p1", "write", None, origins, "UTC")


@pytest.mark.parametrize(
    ("origin", "patterns", "allowed"),
    [
        ("https://shop.example.com", ("shop.example.com",), True),
        ("https://www.shop.example.com", ("https://shop.example.com",), True),
        ("http://shop.example.com", ("https://shop.example.com/",), True),
        ("https://evil.com", ("shop.example.com",), False),
        ("https://shop.example.com.evil.com", ("shop.example.com",), False),
        ("https://a.b.example.com", ("*.example.com",), True),
        ("https://example.com", ("*.example.com",), True),
        ("https://badexample.com", ("*.example.com",), False),
        ("http://localhost:3000", ("localhost:3000",), True),
        ("http://localhost:3001", ("localhost:3000",), False),
        ("https://anything.io", ("*",), True),
        ("", ("*",), False),
    ],
)
def test_origin_matching(origin: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert origin_allowed(origin, patterns) is allowed


def test_secret_hashing_is_salted_and_verifiable() -> None:
    first, second = hash_secret("sec_abc"), hash_secret("sec_abc")
    assert first != second and "sec_abc" not in first
    assert verify_secret("sec_abc", first) and verify_secret("sec_abc", second)
    assert not verify_secret("sec_abd", first)
    assert not verify_secret("sec_abc", "garbage") and not verify_secret("", first)


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # no proxies configured: peer
        ("203.0.113.9", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.9"),  # spoof from untrusted peer
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7", ["10.0.0.0/8"], "1.2.3.4"),  # rightmost
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
    ],
)
def test_client_ip_from_trusted_proxies_only(
    peer: str, xff: str, trusted: list[str], expected: str
) -> None:
    proxies = TrustedProxies(tuple(ipaddress.ip_network(c) for c in trusted))
    assert proxies.client_ip(peer, xff, "") == expected


def test_geo_country_offline_and_private_addresses_empty() -> None:
    geo = GeoLookup()
    assert geo.lookup("8.8.8.8").country == "US"
    assert geo.lookup("81.2.69.142").country == "GB"
    assert geo.lookup("2a00:1450:4001:82b::200e").country == "DE"
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "nonsense", ""):
        assert geo.lookup(ip).country == ""


def test_visitor_id_depends_on_every_input() -> None:
    base = visitor_id(b"s" * 32, "p", "1.2.3.4", "ua")
    assert base == visitor_id(b"s" * 32, "p", "1.2.3.4", "ua")
    assert (
        len(
            {
                base,
                visitor_id(b"t" * 32, "p", "1.2.3.4", "ua"),
                visitor_id(b"s" * 32, "q", "1.2.3.4", "ua"),
                visitor_id(b"s" * 32, "p", "1.2.3.5", "ua"),
                visitor_id(b"s" * 32, "p", "1.2.3.4", "ub"),
            }
        )
        == 5
    )


def test_salts_rotate_daily_and_keep_yesterday(sql_engine: Any) -> None:
    book = SaltBook(sql_engine)
    before = datetime(2026, 5, 1, 23, 50, tzinfo=UTC)
    after = before + timedelta(minutes=20)
    cur_before, prev_before = book.ids(before, "p", "1.1.1.1", "ua")
    cur_after, prev_after = book.ids(after, "p", "1.1.1.1", "ua")
    assert cur_before != cur_after
    assert prev_after == cur_before  # after midnight, yesterday's id is still recognisable
    assert prev_before != cur_before
    # a second process (a new book on the same database) derives the same ids
    assert SaltBook(sql_engine).ids(after, "p", "1.1.1.1", "ua") == (cur_after, prev_after)


def test_pipeline_drops_bots_with_a_reason(sql_engine: Any) -> None:
    ctx = Context(salts=SaltBook(sql_engine), geo=GeoLookup(), keys=RedisKeys("x"))
    hit = Hit(type="track", name="screen_view", reserved={"__path": "https://a.io/"})
    bot = Request(
        client=_client(),
        server_side=False,
        ip="8.8.8.8",
        user_agent=UA["googlebot"],
        received_ms=NOW_MS,
    )
    assert process_track(hit, bot, ctx) == Dropped("bot")
    human = Request(
        client=_client(),
        server_side=False,
        ip="8.8.8.8",
        user_agent=UA["chrome_win"],
        received_ms=NOW_MS,
    )
    assert not isinstance(process_track(hit, human, ctx), Dropped)
    # a backend with a secret is judged by the UA it forwards, not its own
    backend = Request(
        client=_client(), server_side=True, ip="8.8.8.8", user_agent="node", received_ms=NOW_MS
    )
    assert not isinstance(process_track(hit, backend, ctx), Dropped)
    forwarded = Hit(type="track", name="x", reserved={"__user_agent": UA["bingbot"]})
    assert process_track(forwarded, backend, ctx) == Dropped("bot")


def test_an_event_older_than_the_projects_retention_is_not_accepted() -> None:
    client = ClientInfo("c1", "p1", "write", None, ("*",), "UTC", retention_days=2)

    def outcome(days_ago: float) -> str | None:
        stamp = NOW_MS - int(days_ago * 86_400_000)
        req = Request(client=client, server_side=False, ip="1.2.3.4", user_agent="x")
        req.received_ms = NOW_MS
        d = Draft(hit=Hit(type="track", name="x", reserved={"__timestamp": stamp}), req=req)
        return step_timestamp(d, WINDOW)  # type: ignore[arg-type]

    assert outcome(1.9) is None
    assert outcome(2.1) == "timestamp_too_old"


def test_a_backends_own_user_agent_is_not_the_visitors_browser(sql_engine: Any) -> None:
    ctx = Context(salts=SaltBook(sql_engine), geo=GeoLookup(), keys=RedisKeys("x"))
    backend = Request(
        client=_client(),
        server_side=True,
        ip="8.8.8.8",
        user_agent="Python-urllib/3.11",
        received_ms=NOW_MS,
    )

    def tail(hit: Hit, req: Request) -> bytes:
        items = process_track(hit, req, ctx)
        assert not isinstance(items, Dropped)
        return items.payload_tail

    plain = tail(Hit(type="track", name="invoice_paid", profile_id="u1"), backend)
    assert b'"browser":"Python' not in plain and b'"browser"' not in plain.replace(
        b'"browser":""', b""
    )
    forwarded = Hit(type="track", name="x", reserved={"__user_agent": UA["chrome_win"]})
    assert b'"browser":"Chrome"' in tail(forwarded, backend)
    # an app (no secret, no Origin) keeps its own user agent: it names the visitor's system
    app = Request(
        client=_client(),
        server_side=False,
        ip="8.8.8.8",
        user_agent=UA["chrome_win"],
        received_ms=NOW_MS,
        browser=False,
    )
    assert b'"browser":"Chrome"' in tail(Hit(type="track", name="x"), app)
