"""CSV downloads of what the dashboard shows: the KPI cards, the chart's series and each
panel's rows, for the same view (range, filters, tab, metric) as the page they sit on.

Rows come from the very contexts the fragments render, so a download lists exactly the
rows, labels and columns on screen; numbers are written unrounded (`12,345`, not `12.3k`).
Text cells are guarded against formula injection: a spreadsheet runs a cell starting with
`=`, `+`, `-`, `@` (or a tab or carriage return) as a formula, so such a cell gets a leading
`'`. Numbers are written as numbers and never guarded.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from litestar import Request, Response, get

from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights import reports
from gatrix.services import Services
from gatrix.web.dashboard import (
    _asked,
    _project,
    goals_context,
    kpis_context,
    panel_context,
    resolve,
)
from gatrix.web.kit import PageError, too_heavy_page
from gatrix.web.view import COLUMN_LABELS, KPI_LABELS, PANELS

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(h) for h in header])
    writer.writerows([[cell(v) for v in row] for row in rows])
    return out.getvalue()


def kpis_table(services: Services, q: Any) -> tuple[list[str], list[list[Any]]]:
    cards = kpis_context(services, q)["cards"]
    header = ["Metric", "Value"]
    if q.compare:
        header += ["Previous period", "Change %"]
    rows = []
    for card in cards:
        row = [card["label"], card["value"]]
        if q.compare:
            row += [card["before"], card["change"]]
        rows.append(row)
    return header, rows


def chart_table(services: Services, q: Any, metric: str) -> tuple[list[str], list[list[Any]]]:
    series = reports.timeseries(services.store, q, metric)
    previous = series.get("previous")
    header = ["Bucket", KPI_LABELS[metric]]
    if previous is not None:
        header.append("Previous period")
    rows = []
    for n, point in enumerate(series["points"]):
        row = [point["bucket"], point["value"]]
        if previous is not None:
            row.append(previous[n]["value"] if n < len(previous) else None)
        rows.append(row)
    return header, rows


def panel_table(services: Services, q: Any, view: Any, panel: str) -> tuple[list[str], list]:
    p = panel_context(services, q, view, panel)
    header = [p["heading"], *(c["label"] for c in p["columns"])]
    return header, [[row["label"], *row["numbers"]] for row in p["rows"]]


def goals_table(services: Services, q: Any, view: Any) -> tuple[list[str], list[list[Any]]]:
    g = goals_context(services, q, view)
    header = ["Goal", "Step", *(COLUMN_LABELS[k] for k in g["columns"])]
    return header, [
        [row["name"], row["step"], *(row[k] for k in g["columns"])] for row in g["rows"]
    ]


def download_name(project: dict[str, Any], name: str, view: Any) -> str:
    return _SAFE_NAME.sub("-", f"{project['name']}-{name}-{view.range}").strip("-") + ".csv"


async def render_download(
    request: Request, services: Services, project: dict[str, Any], name: str
) -> Response[str]:
    """`name`: kpis.csv, chart.csv, goals.csv or PANEL.csv (a panel of the overview)."""
    stem = name.removesuffix(".csv")
    if not name.endswith(".csv") or (stem not in ("kpis", "chart", "goals") and stem not in PANELS):
        raise PageError(status_code=404, detail="No such download.")
    asked = _asked(request)

    def build() -> tuple[Any, str]:
        view, q = resolve(services, project, asked)
        if stem == "kpis":
            header, rows = kpis_table(services, q)
        elif stem == "chart":
            header, rows = chart_table(services, q, view.metric)
        elif stem == "goals":
            header, rows = goals_table(services, q, view)
        else:
            header, rows = panel_table(services, q, view, stem)
        return view, csv_text(header, rows)

    try:
        view, text = await services.reads.run(build)
    except QueryTooHeavy as exc:
        raise too_heavy_page(exc) from None
    return Response(
        text,
        media_type="text/csv",  # the framework adds "; charset=utf-8"
        headers={
            "Content-Disposition": f'attachment; filename="{download_name(project, stem, view)}"',
            "Cache-Control": "no-store",
        },
    )


@get("/dashboard/{project_id:str}/export/{name:str}", include_in_schema=False)
async def dashboard_download(
    request: Request, services: Services, project_id: str, name: str
) -> Response[str]:
    project = await _project(request, services, project_id)
    return await render_download(request, services, project, name)


DOWNLOAD_ROUTES = [dashboard_download]
