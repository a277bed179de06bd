"""The dashboard's state, all of it in the URL: range, interval, comparison, filters, the
chart's metric and each panel's tab. Parsing it and writing links that change one part."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from litestar import Request

from gatrix.insights.query import INTERVALS, RANGES, QueryParams

KPI_CARDS = (
    "visitors",
    "sessions",
    "pageviews",
    "views_per_session",
    "bounce_rate",
    "avg_session_duration",
)
SERIES_FOR = {"views_per_session": "pageviews"}  # no series of its own: closest one
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

    @classmethod
    def from_request(cls, request: Request) -> View:
        q = request.query_params
        tabs = {panel: q.get(f"tab_{panel}", "") for panel in PANELS}
        return cls(
            range=q.get("range") if q.get("range") in RANGES else "30d",
            start=(q.get("start") or "")[:32],
            end=(q.get("end") or "")[:32],
            interval=q.get("interval") if q.get("interval") in INTERVALS else "",
            compare="off" if q.get("compare") == "off" else "previous",
            metric=q.get("metric") if q.get("metric") in KPI_CARDS else "visitors",
            filters=tuple(f for f in q.getall("filter", []) if f)[:20],
            tabs={k: v for k, v in tabs.items() if v},
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
        pairs += [(f"tab_{panel}", tab) for panel, tab in sorted(view.tabs.items())]
        return urlencode(pairs)

    def with_filter(self, dimension: str, value: str) -> str:
        new = f"{dimension}:is:{value}"
        kept = tuple(f for f in self.filters if f != new)
        return self.query_string(filters=(*kept, new))

    def without_filter(self, text: str) -> str:
        return self.query_string(filters=tuple(f for f in self.filters if f != text))

    def with_tab(self, panel: str, tab: str) -> str:
        return self.query_string(tabs={**self.tabs, panel: tab})
