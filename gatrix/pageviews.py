"""What counts as a page view: the one definition that the insights queries and the ClickHouse
migrations share (the migrations receive it as `${is_pageview}` when they are rendered).

OpenPanel's SDKs name a page view `screen_view`; the Gatrix frontend sends `page_view`;
older trackers `pageview`. Every other event name is a custom event.
"""

from __future__ import annotations

PAGEVIEW_NAMES = ("screen_view", "page_view", "pageview")
PAGEVIEW_SQL = "name IN (" + ", ".join(f"'{name}'" for name in PAGEVIEW_NAMES) + ")"
