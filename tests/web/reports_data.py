"""Known visits for the Funnels, Retention and Paths pages' tests, and readers of the tables
those pages show."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.web.humane import duration

from ..factory import events

# (visitor, days ago, country, [pages or ("event", name, properties)])
VISITS: list[tuple[str, int, str, list[Any]]] = [
    ("r1", 1, "DE", ["/", "/pricing", ("event", "signup", {"plan": "pro"})]),
    ("r2", 2, "DE", ["/", "/pricing"]),
    ("r3", 2, "US", ["/", "/docs", "/pricing"]),
    ("r4", 3, "US", ["/pricing", ("event", "signup", {"plan": "free"})]),
    ("r5", 3, "KR", ["/", "/pricing", ("event", "signup", {"plan": "free"})]),
    ("r6", 4, "US", ["/", "/docs"]),
    # returning visitors: week-old first visits that came back this week
    ("r1", 9, "DE", ["/", "/docs"]),
    ("r7", 10, "KR", ["/", "/pricing"]),
    ("r7", 2, "KR", ["/docs"]),
]
FUNNEL = "range=30d&step=page%3A%2F&step=page%3A%2Fpricing&step=event%3Asignup&window=7d"


def seed(store: Store, project_id: str) -> None:
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    specs = []
    for n, (visitor, days, country, steps) in enumerate(VISITS):
        start = today - timedelta(days=days)
        for i, step in enumerate(steps):
            spec: dict[str, Any] = {
                "at": start + timedelta(minutes=3 * i),
                "device_id": visitor,
                "session_id": f"{visitor}-{n}",
                "country": country,
            }
            if isinstance(step, tuple):
                spec.update(name=step[1], properties=step[2], path=steps[i - 1])
            else:
                spec["path"] = step
            specs.append(spec)
    events(store, project_id, specs)


def tables(html: str) -> list[list[list[str]]]:
    """Each report table of a page: its header row, then its rows, cells as text."""
    found = []
    for body in re.findall(r'<table class="list report[^"]*"[^>]*>(.*?)</table>', html, re.S):
        rows = []
        for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
            rows.append([unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
        found.append(rows)
    return found


def funnel_rows(steps: list[dict[str, Any]]) -> list[list[str]]:
    """A funnel's API steps as the page's table shows them."""
    out = []
    for n, s in enumerate(steps, start=1):
        median = s["median_seconds_from_previous"]
        out.append(
            [
                f"{n}. {s['step']}",
                f"{s['visitors']:,}",
                f"{s['conversion']:g}%",
                f"{s['conversion_from_previous']:g}%" if n > 1 else "—",
                f"{s['dropped']:,}" if n > 1 else "—",
                "—" if median is None else duration(median),
            ]
        )
    return out
