"""What counts as a page view, and what as a custom event: the one definition that the
insights queries and the ClickHouse migrations share (the migrations receive them as
`${is_pageview}` and `${is_custom}` when they are rendered).

OpenPanel's SDKs name a page view `screen_view`; the Gatrix frontend sends `page_view`;
older trackers `pageview`. `ENGAGEMENT_NAME` marks the time a visitor spent on a page
(Plausible's engagement events): it counts as neither, and only extends the visit. Every
other event name is a custom event.
"""

from __future__ import annotations

PAGEVIEW_NAMES = ("screen_view", "page_view", "pageview")
ENGAGEMENT_NAME = "__engagement"
PAGEVIEW_SQL = "name IN (" + ", ".join(f"'{name}'" for name in PAGEVIEW_NAMES) + ")"
CUSTOM_EVENT_SQL = (
    "name NOT IN (" + ", ".join(f"'{name}'" for name in (*PAGEVIEW_NAMES, ENGAGEMENT_NAME)) + ")"
)
