"""An imported record is enriched exactly as the live pipeline enriches a backend's hit that
forwards the visitor's user agent and IP: the import calls the pipeline's parsers directly
(for speed), and this compares the two on records that exercise every rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gatrix.ingest import pipeline
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.payloads import Hit
from gatrix.meta.projects import ClientInfo
from gatrix.portability.enrich import ENRICHED, Enricher, Imported
from gatrix.portability.work import session_ids

from ..conftest import CHROME_UA

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
UMAMI_GIVEN = {
    "browser": "Firefox",
    "os": "Windows",
    "os_version": "10",
    "device": "desktop",
    "country": "DE",
    "region": "Berlin",
    "city": "Berlin",
    "utm_source": "newsletter",
}

RECORDS = [
    Imported("pageview", 1, "d1", url="https://shop.example/a?utm_source=x&gclid=abc"),
    Imported(
        "signup",
        1,
        "d2",
        profile_id="u2",
        url="https://shop.example/pricing",
        referrer="https://www.google.com/search?q=shop",
        title="Pricing " * 100,
        user_agent=CHROME_UA,
        ip="81.2.69.160",
        screen="1920x1080" * 5,
        language="de-DE",
        revenue=12.5,
        duration=3_000,
        properties={"plan": "pro"},
    ),
    Imported("pageview", 1, "d3", url="/app/screen", user_agent=IPHONE_UA, ip="10.0.0.1"),
    Imported("pageview", 1, "d4", url="https://shop.example/", user_agent=BOT_UA),
    Imported("pageview", 1, "d5", url="https://shop.example/x", given=UMAMI_GIVEN),
    # a given value never replaces what a parser found (the UA's browser, the URL's UTM)
    Imported(
        "pageview",
        1,
        "d6",
        url="https://shop.example/?utm_source=ads",
        user_agent=CHROME_UA,
        given=UMAMI_GIVEN,
    ),
    Imported("buy", 1, "d7", referrer="android-app://com.google.android.gm", revenue=float("nan")),
    Imported("buy", 1, "d8", revenue=float("inf"), duration=-5),
    Imported("buy", 1, "d9", revenue=1e16, duration=2**40),
    Imported("buy", 1, "d10", revenue=True, duration=10**400),  # type: ignore[arg-type]
    Imported("pageview", 1, "d11", url="not a url", referrer="https://shop.example/self"),
]


def live_row(rec: Imported, geo: GeoLookup) -> dict[str, Any] | str:
    """The live pipeline's steps on the same facts, sent as a backend forwarding them."""
    reserved: dict[str, Any] = {"__path": rec.url, "__referrer": rec.referrer}
    optional = {
        "__title": rec.title,
        "__user_agent": rec.user_agent,
        "__screen": rec.screen,
        "__language": rec.language,
    }
    reserved.update({k: v for k, v in optional.items() if v})
    reserved.update({k: v for k, v in (("__revenue", rec.revenue), ("__duration", rec.duration))})
    client = ClientInfo("p", "p", "root", None, (), "UTC")
    req = pipeline.Request(client, True, rec.ip, rec.user_agent, browser=False, received_ms=1)
    hit = Hit(type="track", name=rec.name, profile_id=rec.profile_id, reserved=reserved)
    d = pipeline.Draft(hit=hit, req=req, ua=rec.user_agent, ip=rec.ip)
    ctx = pipeline.Context(salts=None, geo=geo, keys=None)  # type: ignore[arg-type]
    steps = [pipeline.step_bot, pipeline.step_user_agent, pipeline.step_page]
    steps += [pipeline.step_referrer] + ([pipeline.step_geo] if rec.ip else [])
    for step in steps:
        reason = step(d, ctx)
        if reason:
            return reason
    pipeline._extras(d)
    row = {k: "" for k in ENRICHED} | d.row
    row.update(name=rec.name, device_id=rec.device_id, profile_id=rec.profile_id)
    row["properties"] = rec.properties
    for key, value in rec.given.items():
        if value and not row[key]:
            row[key] = value
    return row


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: r.device_id)
def test_an_imported_record_gets_the_live_pipelines_columns(rec: Imported) -> None:
    geo = GeoLookup()
    want = live_row(rec, geo)
    got = Enricher().values(rec)
    if isinstance(want, str):
        assert got == want
        return
    assert not isinstance(got, str)
    assert dict(zip(ENRICHED, got, strict=True)) == want
    assert set(want) == set(ENRICHED)  # the import fills every column the live path does


def test_the_records_cover_what_they_claim() -> None:
    # guard the table above: the rules it means to exercise are really reached
    geo = GeoLookup()
    rows = {r.device_id: live_row(r, geo) for r in RECORDS}
    assert rows["d4"] == "bot"
    assert rows["d2"]["country"] and rows["d2"]["browser"] == "Chrome"  # type: ignore[index]
    assert rows["d5"]["browser"] == "Firefox" and rows["d6"]["browser"] == "Chrome"  # type: ignore[index]
    assert rows["d6"]["utm_source"] == "ads" and rows["d1"]["click_id"] == "abc"  # type: ignore[index]
    assert [rows[d]["revenue"] for d in ("d7", "d8", "d9", "d10")] == [0.0] * 4  # type: ignore[index]
    assert rows["d9"]["duration"] == 2**32 - 1 and rows["d8"]["duration"] == 0  # type: ignore[index]


def test_session_ids_are_the_visitor_hash_and_start_in_hex() -> None:
    visitors = np.array([0, 1, 2**64 - 1, 0xDEADBEEF], np.uint64)
    starts = np.array([0, 1_700_000_000_000, 2**48 - 1, 5], np.int64)
    want = [f"{int(v):016x}{int(s):012x}" for v, s in zip(visitors, starts, strict=True)]
    assert session_ids(visitors, starts).to_pylist() == want
