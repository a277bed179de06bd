"""Ranges, buckets and filter parsing with a fixed `now`: exact by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatrix.insights.filters import InvalidFilter, parse_filter
from gatrix.insights.query import (
    InvalidQuery,
    QueryParams,
    bucket_starts,
    build_query,
    resolve_range,
)

NOW = datetime(2026, 3, 15, 14, 37, 12, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("name", "tz", "start", "end"),
    [
        ("30min", "UTC", "2026-03-15T14:08:00+00:00", "2026-03-15T14:38:00+00:00"),
        ("1h", "UTC", "2026-03-15T13:38:00+00:00", "2026-03-15T14:38:00+00:00"),
        ("24h", "UTC", "2026-03-14T14:38:00+00:00", "2026-03-15T14:38:00+00:00"),
        ("today", "UTC", "2026-03-15T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("today", "Asia/Seoul", "2026-03-15T00:00:00+09:00", "2026-03-16T00:00:00+09:00"),
        ("yesterday", "America/New_York", "2026-03-14T00:00:00-04:00", "2026-03-15T00:00:00-04:00"),
        ("7d", "UTC", "2026-03-09T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("30d", "UTC", "2026-02-14T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("mtd", "UTC", "2026-03-01T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("lastmonth", "UTC", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
        ("ytd", "UTC", "2026-01-01T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("12m", "UTC", "2025-04-01T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
    ],
)
def test_named_ranges(name: str, tz: str, start: str, end: str) -> None:
    rng = resolve_range(name, tz, NOW)
    assert rng.as_dict()["start"] == start and rng.as_dict()["end"] == end


def test_today_in_seoul_after_utc_evening_is_the_next_day() -> None:
    late = datetime(2026, 3, 15, 20, 0, tzinfo=UTC)  # 05:00 on the 16th in Seoul
    assert resolve_range("today", "Asia/Seoul", late).as_dict()["start"] == (
        "2026-03-16T00:00:00+09:00"
    )


def test_custom_dates_are_whole_days_in_the_project_zone() -> None:
    rng = resolve_range("custom", "Asia/Kolkata", NOW, "2026-03-01", "2026-03-02")
    assert rng.as_dict() == {
        "start": "2026-03-01T00:00:00+05:30",
        "end": "2026-03-03T00:00:00+05:30",
        "timezone": "Asia/Kolkata",
    }
    assert not rng.hour_aligned()  # half-hour zone: rollups cannot answer it exactly


def test_dst_day_has_23_hourly_buckets() -> None:
    rng = resolve_range("custom", "America/New_York", NOW, "2026-03-08", "2026-03-08")
    assert len(bucket_starts(rng, "hour")) == 23
    assert len(bucket_starts(rng, "day")) == 1


def test_week_and_month_buckets() -> None:
    rng = resolve_range("custom", "UTC", NOW, "2026-03-04", "2026-03-20")
    assert [b.date().isoformat() for b in bucket_starts(rng, "week")] == [
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
    ]
    rng = resolve_range("12m", "UTC", NOW)
    months = bucket_starts(rng, "month")
    assert len(months) == 12 and months[0].date().isoformat() == "2025-04-01"


def test_comparison_periods() -> None:
    q = build_query("p", "UTC", QueryParams(range="7d", compare="previous"), NOW)
    prev = q.comparison()
    # the seven days before, over the time elapsed in this (still running) range
    assert prev is not None and prev.range.start == q.range.start - timedelta(days=7)
    assert prev.range.end - prev.range.start == NOW - q.range.start
    whole = q.comparison(same_elapsed=False)
    assert whole is not None and whole.range.end == q.range.start
    year = build_query(
        "p",
        "UTC",
        QueryParams(range="custom", start="2028-02-29", end="2028-02-29", compare="year"),
        NOW,
    )
    assert year.comparison().range.start.isoformat() == "2027-02-28T00:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "dimension", "operator", "value", "key"),
    [
        ("countries:is:KR", "countries", "is", "KR", ""),
        ("country:is_not:KR", "countries", "is_not", "KR", ""),
        ("page:starts_with:/blog", "pages", "starts_with", "/blog", ""),
        ("referrer:contains:http://a:b", "referrers", "contains", "http://a:b", ""),
        ("property.plan:is:pro", "property", "is", "pro", "plan"),
        ("name:not_contains:x", "name", "not_contains", "x", ""),
    ],
)
def test_filter_parsing(text: str, dimension: str, operator: str, value: str, key: str) -> None:
    f = parse_filter(text)
    assert (f.dimension, f.operator, f.value, f.key) == (dimension, operator, value, key)


@pytest.mark.parametrize("text", ["x:is:1", "countries:equals:KR", "countries", "property.:is:x"])
def test_bad_filters(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(text)


def test_too_many_buckets_and_bad_interval() -> None:
    with pytest.raises(InvalidQuery):
        bucket_starts(resolve_range("90d", "UTC", NOW), "minute")
    with pytest.raises(InvalidQuery):
        build_query("p", "UTC", QueryParams(range="7d", interval="fortnight"), NOW)


@pytest.mark.parametrize(
    ("rng", "interval"), [("7d", "minute"), ("all", "hour"), ("all", "minute")]
)
def test_too_many_buckets_are_refused_before_any_report_runs(rng: str, interval: str) -> None:
    with pytest.raises(InvalidQuery, match="buckets"):
        build_query(
            "p", "UTC", QueryParams(range=rng, interval=interval), datetime(2026, 5, 1, tzinfo=UTC)
        )


def test_the_previous_period_follows_the_projects_calendar() -> None:
    """Across a DST change midnight stays midnight; months compare with whole months; a
    running range compares over the same elapsed time."""
    now = datetime(2026, 11, 27, 13, 5, tzinfo=UTC)  # 14:05 in Berlin
    berlin = "Europe/Berlin"

    def previous(range_: str) -> tuple[str, str]:
        q = build_query("p", berlin, QueryParams(range=range_, compare="previous"), now)
        prev = q.comparison()
        assert prev is not None
        tz = prev.range.tz
        return (
            prev.range.start.astimezone(tz).isoformat(),
            prev.range.end.astimezone(tz).isoformat(),
        )

    # 30 days from Oct 29 (after the clocks went back on Oct 25) until today 14:05
    assert previous("30d") == ("2026-09-29T00:00:00+02:00", "2026-10-28T14:05:00+01:00")
    assert previous("lastmonth") == ("2026-09-01T00:00:00+02:00", "2026-10-01T00:00:00+02:00")
    assert previous("mtd") == ("2026-10-01T00:00:00+02:00", "2026-10-27T14:05:00+01:00")
    assert previous("today") == ("2026-11-26T00:00:00+01:00", "2026-11-26T14:05:00+01:00")
    assert previous("yesterday") == ("2026-11-25T00:00:00+01:00", "2026-11-26T00:00:00+01:00")
    assert previous("ytd")[0] == "2025-01-01T00:00:00+01:00"
