"""Known answers for the Umami CSV and Segment NDJSON mappings, imported for real."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.portability.importer import run_import

from ..conftest import CHROME_UA

UMAMI_HEADER = (
    "website_id,session_id,visit_id,event_id,hostname,browser,os,device,screen,language,"
    "country,subdivision1,city,url_path,url_query,referrer_path,referrer_query,"
    "referrer_domain,page_title,event_type,event_name,created_at"
)
UMAMI_ROWS = [
    # visitor A: two page views 10 minutes apart, then a custom event, then a page view
    # two hours later (a new session)
    "w,A,x,e1,shop.test,chrome,Mac OS,laptop,1440x900,en-US,DE,DE-BE,Berlin,/,"
    "utm_source=news&utm_medium=email,/search,q=x,www.google.com,Home,1,,2026-03-01 10:00:00",
    "w,A,x,e2,shop.test,chrome,Mac OS,laptop,1440x900,en-US,DE,DE-BE,Berlin,/pricing,,,,,"
    '"Pricing, ""plans""",1,,2026-03-01 10:10:00',
    "w,A,x,e3,shop.test,chrome,Mac OS,laptop,1440x900,en-US,DE,DE-BE,Berlin,/pricing,,,,,,"
    "2,signup,2026-03-01 10:11:00",
    "w,A,y,e4,shop.test,chrome,Mac OS,laptop,1440x900,en-US,DE,DE-BE,Berlin,/docs,,,,,,"
    "1,,2026-03-01 12:30:00",
    # visitor B on a phone
    "w,B,z,e5,shop.test,ios,iOS,mobile,390x844,ko-KR,KR,,Seoul,/,,,,t.co,,1,,2026-03-01 11:00:00",
    # no time: dropped as invalid
    "w,C,z,e6,shop.test,chrome,Linux,desktop,,,,,,/,,,,,,1,,",
]


def _rows(store: Store, project: str) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT * FROM gatrix.events WHERE project_id = {p:String} ORDER BY created_at",
        {"p": project},
    )


def _import(
    store: Store, tmp_path: Path, fmt: str, content: str | bytes, name: str = "data"
) -> tuple[str, Any]:
    """`content` written to a file and imported into a new project: (project, report)."""
    project = f"{fmt}-{name}-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.{'csv' if fmt == 'umami' else 'ndjson'}"
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    state = tmp_path / f"state-{project}"
    return project, run_import(store, state, project, fmt, [path], workers=1)


def test_umami_export_maps_to_events_and_sessions(store: Store, tmp_path: Path) -> None:
    project = f"umami-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "website_event.csv"
    path.write_text(UMAMI_HEADER + "\n" + "\n".join(UMAMI_ROWS) + "\n")
    report = run_import(store, tmp_path / "state", project, "umami", [path], workers=2)
    assert report.events == 5 and report.dropped == {"invalid": 1}
    rows = _rows(store, project)
    first, second, signup, phone, later = rows
    # named as Umami's tracker names them through /api/send
    assert [r["name"] for r in rows] == ["pageview"] * 2 + ["signup"] + ["pageview"] * 2
    assert (first["origin"], first["path"], first["utm_source"], first["utm_medium"]) == (
        "https://shop.test",
        "/",
        "news",
        "email",
    )
    assert (first["referrer_name"], first["referrer_type"]) == ("Google", "search")
    assert second["title"] == 'Pricing, "plans"'
    assert (first["browser"], first["os"], first["device"]) == ("Chrome", "Mac OS X", "desktop")
    assert (first["country"], first["region"], first["city"]) == ("DE", "DE-BE", "Berlin")
    assert (first["screen"], first["language"]) == ("1440x900", "en-US")
    assert (phone["browser"], phone["os"], phone["device"]) == ("Mobile Safari", "iOS", "mobile")
    assert phone["referrer_name"] and phone["referrer_type"] == "social"
    assert {r["device_id"] for r in rows} == {"A", "B"}
    # 30-minute gaps per visitor: A's first three events share a session, 12:30 starts one
    assert first["session_id"] == second["session_id"] == signup["session_id"]
    assert later["session_id"] != first["session_id"]
    assert signup["session_start"] == first["created_at"]
    assert later["session_start"] == later["created_at"]
    sessions = store.query_rows(
        "SELECT count() FROM (SELECT session_id FROM gatrix.sessions"
        " WHERE project_id = {p:String} GROUP BY session_id)",
        {"p": project},
    )
    assert sessions[0][0] == 3


def _segment_lines() -> list[dict[str, Any]]:
    context = {
        "userAgent": CHROME_UA,
        "ip": "8.8.8.8",
        "locale": "fr-FR",
        "screen": {"width": 1920, "height": 1080},
        "page": {
            "url": "https://app.test/home?gclid=abc",
            "referrer": "https://news.ycombinator.com/item?id=1",
            "title": "Home",
        },
        "campaign": {"name": "spring", "source": "hn"},
    }
    return [
        {
            "type": "page",
            "anonymousId": "anon-1",
            "timestamp": "2026-03-01T10:00:00.000Z",
            "context": context,
            "messageId": "m1",
        },
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "anon-1",
            "userId": "user-1",
            "timestamp": "2026-03-01T10:05:00.250Z",
            "properties": {"revenue": 42.5, "items": 3, "coupon": None, "nested": {"a": 1}},
            "context": context,
        },
        {
            "type": "screen",
            "name": "Settings",
            "anonymousId": "anon-2",
            "timestamp": "2026-03-01T11:00:00Z",
            "context": {"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        },
        {
            "type": "identify",
            "userId": "user-1",
            "anonymousId": "anon-3",  # the device the person logged in on
            "timestamp": "2026-03-01T10:06:00Z",
            "traits": {"firstName": "Ada", "email": "ada@example.com", "plan": "pro"},
        },
        {"type": "group", "groupId": "g1", "timestamp": "2026-03-01T10:07:00Z"},
        {
            "type": "screen",
            "name": "Settings",
            "userId": "user-9",
            "timestamp": "2026-03-01T12:00:00Z",
        },
    ]


def test_segment_messages_map_to_events_and_profiles(store: Store, tmp_path: Path) -> None:
    project = f"segment-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "segment.ndjson"
    odd = {  # wrong types where objects and text belong: read leniently, as the live route
        "type": "track",
        "event": "Odd",
        "anonymousId": 5,
        "timestamp": "2026-03-01T13:00:00Z",
        "context": "not an object",
        "properties": [1],
    }
    # a context whose page and screen are no objects still gives its user agent and locale
    odd_context = {
        **odd,
        "event": "Odd context",
        "timestamp": "2026-03-01T13:01:00Z",
        "context": {"userAgent": CHROME_UA, "locale": "de", "page": [1], "screen": "big"},
    }
    lines = [json.dumps(m) for m in [*_segment_lines(), odd, odd_context]]
    path.write_text("\n".join(lines) + "\nnot json\n[1, 2]\n")
    report = run_import(store, tmp_path / "state", project, "segment", [path], workers=2)
    assert report.events == 5 and report.profiles == 1
    assert report.dropped == {"bot": 1, "not_an_event": 1, "invalid": 2}
    page, order, screen, odd_row, context_row = _rows(store, project)
    assert (context_row["browser"], context_row["language"]) == ("Chrome", "de")
    assert (context_row["path"], context_row["screen"]) == ("", "")
    assert (odd_row["name"], odd_row["device_id"], odd_row["browser"]) == ("Odd", "5", "")
    assert odd_row["properties"] == {} and odd_row["session_id"] != screen["session_id"]
    # named as /v1/page names it
    assert (page["name"], page["path"], page["title"]) == ("pageview", "/home", "Home")
    assert (page["browser"], page["os"], page["device"]) == ("Chrome", "Windows", "desktop")
    assert page["country"] and len(page["country"]) == 2  # from the IP, offline database
    assert (page["referrer_name"], page["referrer_type"]) == ("Hacker News", "paid")
    assert (page["click_id_type"], page["utm_source"], page["utm_campaign"]) == (
        "google",
        "hn",
        "spring",
    )
    assert (page["screen"], page["language"]) == ("1920x1080", "fr-FR")
    assert (order["name"], order["revenue"], order["profile_id"]) == (
        "Order Completed",
        42.5,
        "user-1",
    )
    assert order["properties"] == {"items": "3", "nested": '{"a":1}'}
    assert order["session_id"] == page["session_id"] and order["device_id"] == "anon-1"
    # path and name property as /v1/screen stores them
    assert (screen["path"], screen["device_id"], screen["profile_id"]) == (
        "Settings",
        "user-9",
        "user-9",
    )
    assert screen["properties"] == {"name": "Settings"}
    assert report.others == {"identity_links": 1}
    links = store.query_rows(
        "SELECT source, target, kind, linked_at FROM gatrix.identity_links "
        "WHERE project_id = {p:String} ORDER BY source",
        {"p": project},
    )
    # the identify's own link, and the one the order (both ids) makes as live events do
    assert [tuple(link[:3]) for link in links] == [
        ("anon-1", "user-1", "device"),
        ("anon-3", "user-1", "device"),
    ]
    assert links[1][3] == datetime(2026, 3, 1, 10, 6)
    profiles = store.query_dicts(
        "SELECT * FROM gatrix.profiles WHERE project_id = {p:String}", {"p": project}
    )
    assert [(p["profile_id"], p["first_name"], p["email"], p["properties"]) for p in profiles] == [
        ("user-1", "Ada", "ada@example.com", {"plan": "pro"})
    ]


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [400, 990, 5_000])
def test_a_record_nested_too_deep_is_dropped_and_the_import_goes_on(
    store: Store, tmp_path: Path, depth: int
) -> None:
    # deeper than the decoder's recursion limit (5,000), or decodable but too deep to encode
    # again as a property's JSON text (990): one hostile line must not stop the import
    project = f"deep-{uuid.uuid4().hex[:8]}"
    good = json.dumps(_segment_lines()[1])
    hostile = (
        '{"type":"track","event":"x","anonymousId":"a","timestamp":"2026-03-01T10:00:00Z",'
        f'"properties":{{"p":{_nested(depth)}}}}}'
    )
    path = tmp_path / "segment.ndjson"
    path.write_text(f"{good}\n{hostile}\n{good}\n")
    report = run_import(store, tmp_path / "state", project, "segment", [path], workers=1)
    kept = 3 if depth == 400 else 2
    assert report.events == kept
    assert report.dropped == ({} if kept == 3 else {"invalid": 1})
    gatrix_path = tmp_path / "export.ndjson"
    gatrix_path.write_text(
        f'{{"name":"x","created_at":"2026-03-01 10:00:00.000","properties":{_nested(depth)}}}\n'
    )
    report = run_import(
        store, tmp_path / "state2", project + "g", "gatrix", [gatrix_path], workers=1
    )
    assert report.events == 0 and report.dropped == {"invalid": 1}


def test_an_umami_cell_over_the_csv_modules_limit_is_read_and_cut(
    store: Store, tmp_path: Path
) -> None:
    # Python's csv reader refuses cells over 128 KB unless told otherwise
    title = "T" * 300_000
    project, report = _import(
        store,
        tmp_path,
        "umami",
        f"{UMAMI_HEADER}\n"
        f"w,A,x,e1,shop.test,chrome,Mac OS,laptop,,,,,,/,,,,,{title},1,,2026-03-01 10:00:00\n"
        f"w,B,x,e2,shop.test,chrome,Mac OS,laptop,,,,,,/b,,,,,Short,1,,2026-03-01 10:01:00\n",
    )
    assert report.events == 2 and report.dropped == {}
    long_row, short_row = _rows(store, project)
    assert long_row["title"] == "T" * 500 and short_row["title"] == "Short"


def test_segment_lines_the_import_refuses_take_no_part_in_sessions(
    store: Store, tmp_path: Path
) -> None:
    # one visitor, 25 minutes apart: the middle line is refused (invalid UTF-8 inside its
    # properties), so it must not bridge the first and last into one session
    def line(event: str, minute: int, props: bytes = b"{}") -> bytes:
        return (
            b'{"type":"track","event":"' + event.encode() + b'","anonymousId":"v",'
            b'"timestamp":"2026-03-01T10:%02d:00Z","properties":' % minute + props + b"}"
        )

    odd = [
        # a revenue beyond any float, and a time beyond what ClickHouse holds
        b'{"type":"track","event":"huge","anonymousId":"w","timestamp":"2026-03-01T11:00:00Z",'
        b'"properties":{"revenue":1' + b"0" * 400 + b"}}",
        b'{"type":"track","event":"late","anonymousId":"w","timestamp":1' + b"0" * 19 + b"}",
        b'{"type":"track","event":"late","anonymousId":"w","timestamp":"9999-01-01T00:00:00Z"}',
    ]
    lines = [line("a", 0), line("b", 25, b'{"x":"\xff"}'), line("c", 50), *odd]
    project, report = _import(store, tmp_path, "segment", b"\n".join(lines) + b"\n")
    assert report.events == 3 and report.dropped == {"invalid": 3}
    first, last, huge = _rows(store, project)
    assert (first["name"], last["name"], huge["name"]) == ("a", "c", "huge")
    assert first["session_id"] != last["session_id"]
    assert last["session_start"] == last["created_at"]
    assert huge["revenue"] == 0.0


def test_umami_rows_read_as_their_dict_would_read_them(store: Store, tmp_path: Path) -> None:
    # a repeated column name: a short row reaches only its first `session_id`, which both the
    # session pass and the mapping must read; a header that is not UTF-8 stops nothing
    project, report = _import(
        store,
        tmp_path,
        "umami",
        b"session_id,created_at,url_path,event_type,session_id,caf\xe9\n"
        b"S1,2026-03-01 10:00:00,/a,1\n"
        b"S2,2026-03-01 10:05:00,/b,1,S3,x\n",
    )
    assert report.events == 2 and report.dropped == {}
    short, full = _rows(store, project)
    assert (short["device_id"], short["path"]) == ("S1", "/a")
    assert (full["device_id"], full["path"]) == ("S3", "/b")  # the last of the repeated name


def test_imported_ids_follow_the_live_rules(store: Store, tmp_path: Path) -> None:
    """An id live ingestion refuses (an object, a boolean, a control character) makes the
    record invalid in an import too: no device or person the People pages could not open."""
    at = '"timestamp":"2026-03-01T10:00:00Z"'
    lines = [
        '{"type":"track","event":"ok","anonymousId":"fine",' + at + "}",
        '{"type":"track","event":"ok","anonymousId":42,' + at + "}",
        '{"type":"track","event":"x","anonymousId":"id\\u0000x",' + at + "}",
        '{"type":"track","event":"x","anonymousId":"\\u001b[31mred",' + at + "}",
        '{"type":"track","event":"x","anonymousId":{"a":1},"userId":"u",' + at + "}",
        '{"type":"track","event":"x","anonymousId":true,' + at + "}",
        '{"type":"page","userId":"nl\\nx",' + at + "}",
        '{"type":"identify","anonymousId":{"a":1},"userId":"objuser",' + at + "}",
    ]
    project, report = _import(store, tmp_path, "segment", "\n".join(lines).encode() + b"\n")
    assert report.events == 2 and report.profiles == 0 and report.dropped == {"invalid": 6}
    assert sorted(r["device_id"] for r in _rows(store, project)) == ["42", "fine"]
    links = store.query_rows(
        "SELECT count() FROM gatrix.identity_links WHERE project_id = {p:String}", {"p": project}
    )
    assert links[0][0] == 0
    project, report = _import(
        store,
        tmp_path,
        "umami",
        b"session_id,created_at,url_path,event_type\n"
        b"S1,2026-03-01 10:00:00,/a,1\n"
        b'"S\x012",2026-03-01 10:05:00,/b,1\n',
    )
    assert report.events == 1 and report.dropped == {"invalid": 1}
