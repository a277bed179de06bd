"""The dashboard's state, all of it in the URL: range, interval, comparison, filters, the
chart's metric and each panel's tab. Parsing it and writing links that change one part."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from litestar import Request

from gatrix.insights.query import INTERVALS, RANGES, InvalidQuery, QueryParams
from gatrix.web import humane

KPI_CARDS = (
    "visitors",
    "sessions",
    "pageviews",
    "views_per_session",
    "bounce_rate",
    "avg_session_duration",
)
KPI_LABELS = {
    "visitors": "Unique visitors",
    "sessions": "Visits",
    "pageviews": "Page views",
    "views_per_session": "Views per visit",
    "bounce_rate": "Bounce rate",
    "avg_session_duration": "Visit duration",
    "revenue": "Revenue",
}
COLUMN_LABELS = {
    "visitors": "Visitors",
    "conversions": "Conversions",
    "conversion_rate": "Conversion rate",
    "pageviews": "Views",
    "events": "Events",
    "revenue": "Revenue",
}
PAGE_DIMENSIONS = ("pages", "entry_pages", "exit_pages")
ENTRY_EXIT_LABELS = {"entry_pages": "Entrances", "exit_pages": "Exits"}
# a breakdown's column heading and a filter chip's name, in words
DIMENSION_LABELS = {
    "pages": "Page",
    "entry_pages": "Entry page",
    "exit_pages": "Exit page",
    "path": "Page",
    "referrer_types": "Channel",
    "referrers": "Referrer",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    "countries": "Country",
    "regions": "Region",
    "cities": "City",
    "browsers": "Browser",
    "browser_versions": "Browser version",
    "os": "OS",
    "os_versions": "OS version",
    "devices": "Device",
    "screens": "Screen size",
    "languages": "Language",
    "events": "Event",
    "name": "Event",
}


def show_metric(key: str, value: float | None) -> str:
    """A number as the dashboard prints it: units once, durations in minutes and seconds."""
    if value is None:
        return "—"
    if key in ("bounce_rate", "conversion_rate"):
        return f"{value:g}%"
    if key == "avg_session_duration":
        return humane.duration(value)
    if key == "views_per_session":
        return f"{value:.2f}"
    if key == "revenue":
        return f"{value:,.2f}"
    return humane.number(value)


# panel → tabs: (tab key, breakdown dimension, label, filter dimension)
PANELS: dict[str, list[tuple[str, str, str]]] = {
    "pages": [
        ("top", "pages", "Top pages"),
        ("entry", "entry_pages", "Entry pages"),
        ("exit", "exit_pages", "Exit pages"),
    ],
    "sources": [
        ("channels", "referrer_types", "Channels"),
        ("referrers", "referrers", "Referrers"),
        ("utm_source", "utm_source", "UTM source"),
        ("utm_medium", "utm_medium", "UTM medium"),
        ("utm_campaign", "utm_campaign", "UTM campaign"),
    ],
    "locations": [
        ("countries", "countries", "Countries"),
        ("regions", "regions", "Regions"),
        ("cities", "cities", "Cities"),
    ],
    "devices": [
        ("browsers", "browsers", "Browsers"),
        ("os", "os", "OS"),
        ("devices", "devices", "Devices"),
        ("screens", "screens", "Screen sizes"),
        ("languages", "languages", "Languages"),
    ],
    "events": [("events", "events", "Events")],
}
PANEL_TITLES = {
    "pages": "Pages",
    "sources": "Sources",
    "locations": "Locations",
    "devices": "Devices",
    "events": "Events",
}
RANGE_LABELS = {
    "30min": "Last 30 minutes",
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "today": "Today",
    "yesterday": "Yesterday",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "mtd": "Month to date",
    "lastmonth": "Last month",
    "ytd": "Year to date",
    "12m": "Last 12 months",
    "all": "All time",
    "custom": "Custom",
}


MAX_FILTERS = 20
MAX_FILTER_CHARS = 500


def _filters(given: list[str]) -> tuple[str, ...]:
    """The view's filters, refused (not trimmed) when there are too many or one is too long:
    each one costs every query of the page, and a share link is public."""
    filters = tuple(f for f in given if f)
    if len(filters) > MAX_FILTERS:
        raise InvalidQuery(f"at most {MAX_FILTERS} filters")
    if any(len(f) > MAX_FILTER_CHARS for f in filters):
        raise InvalidQuery(f"a filter may be at most {MAX_FILTER_CHARS} characters")
    return filters


@dataclass(frozen=True)
class View:
    range: str = "30d"
    start: str = ""
    end: str = ""
    interval: str = ""
    compare: str = "previous"  # "off" hides the previous period
    metric: str = "visitors"
    filters: tuple[str, ...] = ()
    tabs: dict[str, str] = field(default_factory=dict)
    shown_range: str = ""  # the range the submitted form was showing (to tell which changed)
    goal: str = ""  # a goal's id: the panels show conversion rates for it

    @classmethod
    def from_request(cls, request: Request) -> View:
        q = request.query_params
        tabs = {panel: q.get(f"tab_{panel}", "")[:200] for panel in (*PANELS, "prop")}
        return cls(
            range=q.get("range") if q.get("range") in RANGES else "30d",
            start=(q.get("start") or "")[:32],
            end=(q.get("end") or "")[:32],
            interval=q.get("interval") if q.get("interval") in INTERVALS else "",
            compare="off" if q.get("compare") == "off" else "previous",
            metric=q.get("metric") if q.get("metric") in KPI_CARDS else "visitors",
            filters=_filters(q.getall("filter", [])),
            tabs={k: v for k, v in tabs.items() if v},
            shown_range=q.get("shown_range") or "",
            goal=goal
            if (goal := q.get("goal") or "").isascii() and goal.isdigit() and len(goal) < 10
            else "",
        )

    def params(self) -> QueryParams:
        return QueryParams(
            range=self.range,
            start=self.start or None,
            end=self.end or None,
            interval=self.interval or None,
            compare=None if self.compare == "off" else "previous",
            filters=list(self.filters),
        )

    def tab(self, panel: str) -> str:
        keys = [t[0] for t in PANELS[panel]]
        chosen = self.tabs.get(panel, "")
        return chosen if chosen in keys else keys[0]

    def query_string(self, **changes: object) -> str:
        view = replace(self, **changes) if changes else self
        pairs: list[tuple[str, str]] = [("range", view.range)]
        if view.range == "custom":
            pairs += [("start", view.start), ("end", view.end)]
        if view.interval:
            pairs.append(("interval", view.interval))
        if view.compare == "off":
            pairs.append(("compare", "off"))
        if view.metric != "visitors":
            pairs.append(("metric", view.metric))
        pairs += [("filter", f) for f in view.filters]
        if view.goal:
            pairs.append(("goal", view.goal))
        pairs += [(f"tab_{panel}", tab) for panel, tab in sorted(view.tabs.items())]
        return urlencode(pairs)

    def scope_query(self) -> str:
        """What every page of a project shares: the range (with its dates) and the filters;
        the overview's tabs, metric and goal stay on the overview."""
        pairs: list[tuple[str, str]] = [("range", self.range)]
        if self.range == "custom":
            pairs += [("start", self.start), ("end", self.end)]
        pairs += [("filter", f) for f in self.filters]
        return urlencode(pairs)

    def with_filter(self, dimension: str, value: str) -> str:
        new = f"{dimension}:is:{value}"
        kept = tuple(f for f in self.filters if f != new)
        return self.query_string(filters=(*kept, new))

    def without_filter(self, text: str) -> str:
        return self.query_string(filters=tuple(f for f in self.filters if f != text))

    @staticmethod
    def filter_parts(text: str) -> tuple[str, str]:
        """`countries:is:DE` → ("countries", "DE")."""
        dimension, _, rest = text.partition(":")
        return dimension, rest.partition(":")[2]

    def with_tab(self, panel: str, tab: str) -> str:
        return self.query_string(tabs={**self.tabs, panel: tab})
