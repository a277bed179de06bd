"""What an insights request asks for: a time range in the project's time zone, a bucket
interval, a comparison period and filters. Everything here is parsed and validated; nothing
reaches SQL that is not in a fixed list or a bound parameter.

`now` is an argument everywhere, so ranges are exact in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gatrix.insights.filters import Filter, parse_filter
from gatrix.meta import timezones

RANGES = (
    "30min",
    "1h",
    "24h",
    "today",
    "yesterday",
    "7d",
    "30d",
    "90d",
    "mtd",
    "lastmonth",
    "ytd",
    "12m",
    "all",
    "custom",
)
INTERVALS = ("minute", "hour", "day", "week", "month")
COMPARES = ("previous", "year")
MAX_BUCKETS = 5000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_INTERVAL = {
    "30min": "minute",
    "1h": "minute",
    "24h": "hour",
    "today": "hour",
    "yesterday": "hour",
    "7d": "day",
    "30d": "day",
    "90d": "day",
    "mtd": "day",
    "lastmonth": "day",
    "ytd": "month",
    "12m": "month",
    "all": "month",
}


class InvalidQuery(ValueError):
    """A request parameter we cannot honour; the API answers 400 with this message."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    name: str
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def as_dict(self) -> dict[str, str]:
        return {
            "start": self.start.astimezone(self.tz).isoformat(),
            "end": self.end.astimezone(self.tz).isoformat(),
            "timezone": self.timezone,
        }

    def hour_aligned(self) -> bool:
        """Whole UTC hours at both ends: hourly rollups answer such a range exactly."""
        return all(
            t.minute == 0 and t.second == 0 and t.microsecond == 0 for t in (self.start, self.end)
        )


@dataclass(frozen=True)
class Query:
    project_id: str
    range: TimeRange
    interval: str
    filters: tuple[Filter, ...] = ()
    compare: str | None = None
    # when the question is asked (UTC): no time series bucket starts after it
    now: datetime | None = None

    def comparison(self, same_elapsed: bool = True) -> Query | None:
        """The period to compare with. `year`: the same dates a year before. `previous`: the
        period just before, in the project's calendar: whole days shift by days (midnight
        stays midnight across a DST change), month ranges by months (last month against the
        month before). A range still running (today, month to date…) is compared over the
        same elapsed time only: today until 14:05 against yesterday until 14:05 (the KPIs;
        a chart overlays the whole previous period, `same_elapsed=False`)."""
        if self.compare is None:
            return None
        tz = self.range.tz
        begin = self.range.start.astimezone(tz)
        if self.compare == "year":
            start = _minus_year(begin).astimezone(UTC)
            end = _minus_year(self.range.end.astimezone(tz)).astimezone(UTC)
        else:
            start, end = self._previous_span(tz)
        running = self.now is not None and self.range.start < self.now < self.range.end
        if same_elapsed and self.compare == "previous" and running and self.now is not None:
            # elapsed on the wall clock: 14:05 is 14:05 on both sides of a DST change
            elapsed = _wall(self.now, tz) - _wall(self.range.start, tz)
            cut = (_wall(start, tz) + elapsed).replace(tzinfo=tz).astimezone(UTC)
            end = min(end, cut)
        return replace(self, range=replace(self.range, start=start, end=end), compare=None)

    def _previous_span(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        begin = self.range.start.astimezone(tz)
        finish = self.range.end.astimezone(tz)
        first_day = begin.date()
        if self.range.name in ("lastmonth", "mtd", "12m"):
            months = 12 if self.range.name == "12m" else 1
            start = _midnight(_add_months(first_day, -months), tz)
            return start.astimezone(UTC), self.range.start
        if self.range.name == "ytd":
            start = _midnight(date(first_day.year - 1, 1, 1), tz)
            return start.astimezone(UTC), self.range.start
        whole_days = begin == _midnight(first_day, tz) and finish == _midnight(finish.date(), tz)
        if whole_days:
            days = (finish.date() - first_day).days
            start = _midnight(first_day - timedelta(days=days), tz)
            return start.astimezone(UTC), self.range.start
        length = self.range.end - self.range.start
        return self.range.start - length, self.range.start


def _wall(t: datetime, tz: ZoneInfo) -> datetime:
    return t.astimezone(tz).replace(tzinfo=None)


def _minus_year(t: datetime) -> datetime:
    try:
        return t.replace(year=t.year - 1)
    except ValueError:  # 29 February
        return t.replace(year=t.year - 1, day=28)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    return date(day.year + month // 12, month % 12 + 1, 1)


def resolve_range(
    name: str, timezone: str, now: datetime, start: str | None = None, end: str | None = None
) -> TimeRange:
    if name not in RANGES:
        raise InvalidQuery(f"unknown range {name!r}; use one of {', '.join(RANGES)}")
    timezone = timezones.usable(timezone)
    tz = ZoneInfo(timezone)
    now = now.astimezone(UTC)
    today = now.astimezone(tz).date()
    tomorrow = _midnight(today + timedelta(days=1), tz)
    rolling = {"30min": timedelta(minutes=30), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
    if name in rolling:
        # rolling windows end at the next whole minute so the last bucket is complete
        end_at = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        return TimeRange(end_at - rolling[name], end_at, name, timezone)
    days = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
    if name in days:
        return TimeRange(
            _midnight(today - timedelta(days=days[name] - 1), tz), tomorrow, name, timezone
        )
    if name == "yesterday":
        return TimeRange(
            _midnight(today - timedelta(days=1), tz), _midnight(today, tz), name, timezone
        )
    if name == "mtd":
        return TimeRange(_midnight(_month_start(today), tz), tomorrow, name, timezone)
    if name == "lastmonth":
        first = _add_months(_month_start(today), -1)
        return TimeRange(_midnight(first, tz), _midnight(_month_start(today), tz), name, timezone)
    if name == "ytd":
        return TimeRange(_midnight(date(today.year, 1, 1), tz), tomorrow, name, timezone)
    if name == "12m":
        first = _add_months(_month_start(today), -11)
        return TimeRange(_midnight(first, tz), tomorrow, name, timezone)
    if name == "all":
        return TimeRange(EARLIEST, tomorrow, name, timezone)
    return _custom(start, end, tz, timezone)


def starting_at_first_event(q: Query, first: datetime | None) -> Query:
    """`range=all` begins at midnight (project's zone) of the day of the project's first event
    (`first`; None when it has none: today), not in the year 2000."""
    if q.range.name != "all" or q.range.start != EARLIEST:
        return q
    tz = q.range.tz
    now = q.now or q.range.end - timedelta(seconds=1)
    today = _midnight(now.astimezone(tz).date(), tz)
    start = _midnight(first.astimezone(tz).date(), tz) if first is not None else today
    return replace(q, range=replace(q.range, start=min(start, today)))


OUT_OF_BOUNDS = "dates must be between 2000 and 2100"


def _parse_moment(text: str, tz: ZoneInfo, is_end: bool) -> datetime:
    try:
        if len(text) == 10:  # a date: the whole day, in the project's zone
            day = date.fromisoformat(text)
            return _midnight(day + timedelta(days=1) if is_end else day, tz)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return moment.astimezone(UTC)
    except ValueError as exc:
        raise InvalidQuery(f"invalid date/time {text!r}: use YYYY-MM-DD or ISO 8601") from exc
    except OverflowError:  # year 1 or 9999 moved by a zone's offset leaves datetime's range
        raise InvalidQuery(OUT_OF_BOUNDS) from None


def _custom(start: str | None, end: str | None, tz: ZoneInfo, timezone: str) -> TimeRange:
    if not start or not end:
        raise InvalidQuery("range=custom needs start and end (YYYY-MM-DD or ISO 8601)")
    begin, finish = _parse_moment(start, tz, False), _parse_moment(end, tz, True)
    if finish <= begin:
        raise InvalidQuery("end must be after start")
    if begin < EARLIEST or finish > datetime(2100, 1, 1, tzinfo=UTC):
        raise InvalidQuery(OUT_OF_BOUNDS)
    return TimeRange(begin, finish, "custom", timezone)


def bucket_starts(rng: TimeRange, interval: str) -> list[datetime]:
    """Every bucket of the range, as aware datetimes in the project's zone."""
    tz = rng.tz
    local = rng.start.astimezone(tz)
    if interval == "minute":
        current = local.replace(second=0, microsecond=0)
    elif interval == "hour":
        current = local.replace(minute=0, second=0, microsecond=0)
    else:
        current = datetime.combine(local.date(), time(0), tzinfo=tz)
        if interval == "week":
            current -= timedelta(days=current.weekday())
        elif interval == "month":
            current = current.replace(day=1)
    out: list[datetime] = []
    end = rng.end
    while current.astimezone(UTC) < end:
        out.append(current)
        if len(out) > MAX_BUCKETS:
            raise InvalidQuery(
                f"more than {MAX_BUCKETS} {interval} buckets: pick a larger "
                "interval or a shorter range"
            )
        current = _next_bucket(current, interval, tz)
    return out


def _next_bucket(current: datetime, interval: str, tz: ZoneInfo) -> datetime:
    if interval in ("minute", "hour"):
        step = timedelta(minutes=1) if interval == "minute" else timedelta(hours=1)
        return (current.astimezone(UTC) + step).astimezone(tz)
    if interval == "day":
        return datetime.combine(current.date() + timedelta(days=1), time(0), tzinfo=tz)
    if interval == "week":
        return datetime.combine(current.date() + timedelta(days=7), time(0), tzinfo=tz)
    return datetime.combine(_add_months(current.date(), 1), time(0), tzinfo=tz)


@dataclass
class QueryParams:
    """Raw request parameters, as the API receives them."""

    range: str = "30d"
    start: str | None = None
    end: str | None = None
    interval: str | None = None
    compare: str | None = None
    filters: list[str] = field(default_factory=list)


# the shortest a bucket of each interval can be (a DST day has 23 hours, February 28 days)
_SHORTEST_BUCKET = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(hours=23),
    "week": timedelta(days=7) - timedelta(hours=1),
    "month": timedelta(days=28) - timedelta(hours=1),
}


def build_query(project_id: str, timezone: str, params: QueryParams, now: datetime) -> Query:
    rng = resolve_range(params.range, timezone, now, params.start, params.end)
    interval = params.interval or DEFAULT_INTERVAL.get(params.range) or auto_interval(rng)
    if interval not in INTERVALS:
        raise InvalidQuery(f"unknown interval {interval!r}; use one of {', '.join(INTERVALS)}")
    if not interval_fits(rng, interval):
        # refused here, before any report runs, so every caller answers 400 alike
        raise InvalidQuery(
            f"more than {MAX_BUCKETS} {interval} buckets: pick a larger interval or a shorter range"
        )
    if params.compare and params.compare not in COMPARES:
        raise InvalidQuery(f"unknown compare {params.compare!r}; use previous or year")
    filters = tuple(parse_filter(text) for text in params.filters)
    if len(filters) > 20:
        raise InvalidQuery("at most 20 filters")
    return Query(project_id, rng, interval, filters, params.compare or None, now.astimezone(UTC))


def interval_fits(rng: TimeRange, interval: str) -> bool:
    """Whether the range cut in this interval stays within MAX_BUCKETS."""
    return (rng.end - rng.start) / _SHORTEST_BUCKET[interval] <= MAX_BUCKETS


def auto_interval(rng: TimeRange) -> str:
    span = rng.end - rng.start
    if span <= timedelta(hours=2):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=120):
        return "day"
    return "month"
