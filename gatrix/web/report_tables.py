"""The tables under the report charts, built once for the page and its CSV download, so a
download lists exactly the rows and columns on screen (numbers unrounded in the CSV)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatrix.web import humane
from gatrix.web.report_charts import offset_label
from gatrix.web.view import DIMENSION_LABELS

MAX_TRANSITIONS = 50


@dataclass
class Table:
    header: list[str]
    # per row: what the page shows, and the value the CSV writes
    shown: list[list[str]] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    title: str = ""
    # per row and cell, a hover text (the visitors behind a share); "" for none
    hints: list[list[str]] = field(default_factory=list)

    def add(self, shown: list[str], values: list[Any], hints: list[str] | None = None) -> None:
        self.shown.append(shown)
        self.values.append(values)
        self.hints.append(hints or [""] * len(shown))


def _count(n: int) -> str:
    return f"{n:,}"


def _pct(n: float) -> str:
    return f"{n:g}%"


FUNNEL_HEADER = [
    "Step",
    "Visitors",
    "Conversion",
    "From previous",
    "Dropped",
    "Median time from previous",
]


def funnel_table(steps: list[dict[str, Any]], title: str = "") -> Table:
    table = Table(FUNNEL_HEADER, title=title)
    for n, s in enumerate(steps, start=1):
        median = s["median_seconds_from_previous"]
        table.add(
            [
                f"{n}. {s['step']}",
                _count(s["visitors"]),
                _pct(s["conversion"]),
                _pct(s["conversion_from_previous"]) if n > 1 else humane.MISSING,
                _count(s["dropped"]) if n > 1 else humane.MISSING,
                humane.duration(median) if median is not None else humane.MISSING,
            ],
            [
                s["step"],
                s["visitors"],
                s["conversion"],
                # the table's "—": step 1 has no previous step
                s["conversion_from_previous"] if n > 1 else None,
                s["dropped"] if n > 1 else None,
                median,
            ],
        )
    return table


def breakdown_title(dimension: str, value: str) -> str:
    label = DIMENSION_LABELS.get(dimension, dimension.replace("_", " ").capitalize())
    return f"{label}: {humane.dimension_value(dimension, value)}"


def funnel_tables(result: dict[str, Any]) -> list[Table]:
    """The whole funnel, then one table per breakdown value."""
    tables = [funnel_table(result["steps"], "All visitors" if result.get("breakdown") else "")]
    breakdown = result.get("breakdown")
    if breakdown:
        for row in breakdown["rows"]:
            title = breakdown_title(breakdown["dimension"], row["value"])
            tables.append(funnel_table(row["steps"], title))
    return tables


def funnel_csv(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One sheet: with a breakdown, a first column saying which table a row belongs to."""
    tables = funnel_tables(result)
    if len(tables) == 1:
        return FUNNEL_HEADER, tables[0].values
    dimension = result["breakdown"]["dimension"]
    header = [DIMENSION_LABELS.get(dimension, dimension), *FUNNEL_HEADER]
    values = ["(all)"] + [row["value"] for row in result["breakdown"]["rows"]]
    return header, [
        [value, *row] for value, table in zip(values, tables, strict=True) for row in table.values
    ]


def retention_table(result: dict[str, Any]) -> Table:
    interval = result["interval"]
    cohorts = result["cohorts"]
    width = max((len(c["values"]) for c in cohorts), default=0)
    offsets = [offset_label(interval, n) for n in range(width)]
    table = Table(["Cohort", "Visitors", *offsets])
    for c in cohorts:
        cells = [_pct(v["share"]) for v in c["values"]]
        hints = [f"{_count(v['visitors'])} visitors" for v in c["values"]]
        blank = width - len(cells)
        table.add(
            [c["cohort"], _count(c["size"]), *cells, *[""] * blank],
            [c["cohort"], c["size"], *[v["share"] for v in c["values"]], *[None] * blank],
            ["", "", *hints, *[""] * blank],
        )
    return table


def retention_csv(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The grid's shares, then each cell's visitors (the hover text on the page)."""
    table = retention_table(result)
    offsets = table.header[2:]
    header = [*table.header, *(f"{o} visitors" for o in offsets)]
    rows = []
    for c, values in zip(result["cohorts"], table.values, strict=True):
        counts = [v["visitors"] for v in c["values"]]
        rows.append([*values, *counts, *[None] * (len(offsets) - len(counts))])
    return header, rows


def place(level: int) -> str:
    """A Sankey column in words: the chosen page, or how many pages after or before it."""
    if level == 0:
        return "the page"
    return f"{abs(level)} {'after' if level > 0 else 'before'}"


def transitions_table(result: dict[str, Any]) -> Table:
    """The Sankey's links as rows, most sessions first: from which page to which, at which
    step, and the share of the sessions that reached the page."""
    names = {n["id"]: n for n in result["nodes"]}
    total = result["sessions"]
    table = Table(["Step", "From", "To", "Sessions", "Share"])
    links = sorted(
        result["links"],
        key=lambda link: (-link["sessions"], abs(names[link["source"]]["level"])),
    )
    for link in links[:MAX_TRANSITIONS]:
        a, b = names[link["source"]], names[link["target"]]
        share = round(100 * link["sessions"] / total, 1) if total else 0.0
        step = f"{place(a['level'])} → {place(b['level'])}"
        table.add(
            [step, a["name"], b["name"], _count(link["sessions"]), _pct(share)],
            [step, a["name"], b["name"], link["sessions"], share],
        )
    return table
