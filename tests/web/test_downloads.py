"""CSV downloads of the dashboard: each lists exactly the rows its panel, chart or cards
show, for the same view, with formula cells guarded."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.web.downloads import cell

from ..conftest import LiveServer
from ..factory import events


def _csv(reply: Any) -> list[list[str]]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.match(r'attachment; filename="[\w.-]+\.csv"', reply.headers["content-disposition"])
    return list(csv.reader(io.StringIO(reply.text)))


def _panel_table(html: str) -> tuple[list[str], list[list[str]]]:
    head = re.findall(r"<th scope=\"col\"[^>]*>(.*?)</th>", html)
    rows = []
    for tr in re.findall(r"<tr><td class=\"bar-cell.*?</tr>", html, re.S):
        label = re.search(r"<a class=\"row-filter\"[^>]*>(.*?)</a>", tr, re.S).group(1)
        numbers = re.findall(r'<td class="num">(.*?)</td>', tr)
        rows.append([unescape(label), *numbers])
    return [unescape(h) for h in head], rows


def test_panel_download_lists_what_the_panel_shows(
    site: LiveServer, owner: dict[str, Any], store: Store
) -> None:
    web, project = owner["web"], owner["project_id"]
    now = datetime.now(UTC) - timedelta(minutes=30)
    events(
        store,
        project,
        [{"at": now, "name": "=HYPERLINK(1)", "device_id": "vx", "session_id": "sx"}],
    )
    for panel, query in [
        ("pages", "range=7d"),
        ("sources", "range=7d&tab_sources=referrers"),
        ("locations", "range=7d&filter=countries:is:KR"),
        ("events", "range=7d"),
    ]:
        html = web.get(f"/dashboard/{project}/fragments/panel?panel={panel}&{query}").text
        head, shown = _panel_table(html)
        rows = _csv(web.get(f"/dashboard/{project}/export/{panel}.csv?{query}"))
        assert rows[0] == head, panel
        assert len(rows) - 1 == len(shown) > 0, panel
        for got, seen in zip(rows[1:], shown, strict=True):
            assert got[0] == cell(seen[0])  # the label as shown, guarded
            # numbers unrounded: the shown ones are the same values, humanised
            assert [float(n) for n in got[1:]] == [float(s.replace(",", "")) for s in seen[1:]]
    events_csv = _csv(web.get(f"/dashboard/{project}/export/events.csv?range=7d"))
    assert ["'=HYPERLINK(1)", "1", "1"] in events_csv


def test_kpi_and_chart_downloads_follow_the_view(site: LiveServer, owner: dict[str, Any]) -> None:
    web, project = owner["web"], owner["project_id"]
    kpis = _csv(web.get(f"/dashboard/{project}/export/kpis.csv?range=7d"))
    assert kpis[0] == ["Metric", "Value", "Previous period", "Change %"]
    assert kpis[1][0] == "Unique visitors" and int(kpis[1][1]) >= 5
    plain = _csv(web.get(f"/dashboard/{project}/export/kpis.csv?range=7d&compare=off"))
    assert plain[0] == ["Metric", "Value"]
    chart = _csv(web.get(f"/dashboard/{project}/export/chart.csv?range=7d&metric=pageviews"))
    assert chart[0] == ["Bucket", "Page views", "Previous period"]
    assert len(chart) == 1 + 7 or len(chart) == 1 + 8
    assert sum(int(r[1] or 0) for r in chart[1:]) >= 10
    page = web.get(f"/dashboard/{project}?range=7d").text
    assert f"/dashboard/{project}/export/chart.csv?range=7d" in page
    assert f"/dashboard/{project}/export/kpis.csv?range=7d" in page


def test_downloads_need_access_and_a_known_name(site: LiveServer, owner: dict[str, Any]) -> None:
    import httpx

    project = owner["project_id"]
    with httpx.Client(base_url=site.url) as anonymous:
        reply = anonymous.get(f"/dashboard/{project}/export/pages.csv")
        assert reply.status_code in (302, 303, 401)
    assert owner["web"].get(f"/dashboard/{project}/export/secrets.csv").status_code == 404


def test_formula_cells_are_guarded() -> None:
    assert [cell(v) for v in ["=1+1", "+x", "-y", "@z", "\tq", "ok", -5, 2.5, None]] == [
        "'=1+1",
        "'+x",
        "'-y",
        "'@z",
        "'\tq",
        "ok",
        -5,
        2.5,
        "",
    ]
