"""Dimensions and filters: the fixed list of what can be broken down and filtered, and the
SQL each maps to. Values always travel as bound parameters; only identifiers from this file
are ever written into SQL text.

Two levels, because the data has two grains:
- session dimensions (source, geo, device, entry/exit page) are attributes of a session,
  read from the `sessions` rollup;
- event dimensions (page path, event name, event properties, screen size, language) belong
  to single events; a session matches such a filter when it contains a matching event.

Event filters come in two kinds, because page views and custom events answer different
questions. A page filter (`pages`) picks page views; every other event filter picks custom
events. Each kind also picks sessions (those containing a match), and the other kind is then
counted within those sessions: with `name:is:purchase`, the page views counted are those of
sessions with a purchase, so page views and views per session describe the same sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatrix.pageviews import PAGEVIEW_SQL

OPERATORS = ("is", "is_not", "contains", "not_contains", "starts_with")

# breakdown/filter name → column of the aggregated session (alias in session subqueries)
SESSION_DIMENSIONS: dict[str, str] = {
    "entry_pages": "entry_path",
    "exit_pages": "exit_path",
    "referrers": "referrer_name",
    "referrer_types": "referrer_type",
    "channels": "referrer_type",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "countries": "country",
    "regions": "region",
    "cities": "city",
    "browsers": "browser",
    "browser_versions": "browser_version",
    "os": "os",
    "os_versions": "os_version",
    "devices": "device",
}
# breakdown/filter name → column of the events table
EVENT_DIMENSIONS: dict[str, str] = {
    "pages": "path",
    "events": "name",
    "name": "name",
    # sent with every event by the tracker (`__screen`, `__language`), so not session columns
    "screens": "screen",
    "languages": "language",
}
# singular spellings people type in filters
ALIASES = {
    "page": "pages",
    "path": "pages",
    "entry_page": "entry_pages",
    "exit_page": "exit_pages",
    "referrer": "referrers",
    "source": "referrers",
    "referrer_type": "referrer_types",
    "channel": "referrer_types",
    "country": "countries",
    "region": "regions",
    "city": "cities",
    "browser": "browsers",
    "browser_version": "browser_versions",
    "os_version": "os_versions",
    "device": "devices",
    "event": "events",
    "screen": "screens",
    "language": "languages",
}
PROPERTY_KEY = re.compile(r"^[^\x00-\x1f]{1,200}$")


class InvalidFilter(ValueError):
    pass


@dataclass(frozen=True)
class Filter:
    dimension: str  # canonical name, or "property"
    operator: str
    value: str
    key: str = ""  # property key for property filters

    @property
    def level(self) -> str:
        """`session`, `page` (picks page views) or `event` (picks custom events)."""
        if self.dimension in SESSION_DIMENSIONS:
            return "session"
        return "page" if self.dimension == "pages" else "event"


def canonical_dimension(name: str) -> str:
    name = ALIASES.get(name, name)
    if name in SESSION_DIMENSIONS or name in EVENT_DIMENSIONS:
        return name
    known = sorted({*SESSION_DIMENSIONS, *EVENT_DIMENSIONS})
    raise InvalidFilter(
        f"unknown dimension {name!r}; use one of {', '.join(known)} or property.<key>"
    )


def parse_filter(text: str) -> Filter:
    """`dimension:operator:value`; the value may itself contain colons."""
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise InvalidFilter(f"filter {text!r} must look like dimension:operator:value")
    dimension, operator, value = parts
    if operator not in OPERATORS:
        raise InvalidFilter(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")
    if len(value) > 2000:
        raise InvalidFilter("filter values are limited to 2000 characters")
    if dimension.startswith("property."):
        key = dimension[len("property.") :]
        if not PROPERTY_KEY.match(key):
            raise InvalidFilter("property keys are 1 to 200 printable characters")
        return Filter("property", operator, value, key)
    return Filter(canonical_dimension(dimension), operator, value)


def condition(column_sql: str, f: Filter, param: str) -> str:
    """SQL for one filter on a column expression, the value bound as `{param:String}`."""
    bound = f"{{{param}:String}}"
    if f.operator == "is":
        return f"{column_sql} = {bound}"
    if f.operator == "is_not":
        return f"{column_sql} != {bound}"
    if f.operator == "contains":
        return f"positionCaseInsensitiveUTF8({column_sql}, {bound}) > 0"
    if f.operator == "not_contains":
        return f"positionCaseInsensitiveUTF8({column_sql}, {bound}) = 0"
    return f"startsWith({column_sql}, {bound})"


def event_column(f: Filter, key_param: str) -> str:
    if f.dimension == "property":
        return f"properties[{{{key_param}:String}}]"
    return EVENT_DIMENSIONS[f.dimension]


class Params:
    """Collects bound parameters under generated names (p0, p1, ...)."""

    def __init__(self, initial: dict[str, object] | None = None) -> None:
        self.values: dict[str, object] = dict(initial or {})
        self._n = 0

    def add(self, value: object) -> str:
        name = f"p{self._n}"
        self._n += 1
        self.values[name] = value
        return name


def page_conditions(filters: tuple[Filter, ...], params: Params) -> list[str]:
    """What a page view must be to pass the page filters (empty: there are none)."""
    conds = [condition("path", f, params.add(f.value)) for f in filters if f.level == "page"]
    return [PAGEVIEW_SQL, *conds] if conds else []


def event_conditions(filters: tuple[Filter, ...], params: Params) -> list[str]:
    """What an event must be to pass the other event filters (names, properties, ...)."""
    out = []
    for f in filters:
        if f.level != "event":
            continue
        key_param = params.add(f.key) if f.dimension == "property" else ""
        out.append(condition(event_column(f, key_param), f, params.add(f.value)))
    return out


def session_conditions(filters: tuple[Filter, ...], params: Params) -> list[str]:
    return [
        condition(SESSION_DIMENSIONS[f.dimension], f, params.add(f.value))
        for f in filters
        if f.level == "session"
    ]
