"""Plotly figures of the product reports (funnel bars, the retention heatmap, the paths
Sankey), as plain figure dicts that `assets/js/dashboard.js` draws. Colours that must
follow light and dark come from CSS at draw time, as for the overview's charts."""

from __future__ import annotations

from typing import Any

from gatrix.web import humane

# the same blue as the overview's series; heatmap cells from transparent to it
ACCENT = "rgb(37,99,235)"
HEAT_SCALE = [[0.0, "rgba(37,99,235,0.06)"], [1.0, "rgba(37,99,235,0.95)"]]
NODE_COLOURS = {
    "page": "rgba(37,99,235,0.85)",
    "exit": "rgba(220,38,38,0.75)",
    "entry": "rgba(22,163,74,0.75)",
    "other": "rgba(128,128,128,0.6)",
}


def _layout(height: int) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": False,
    }


def step_label(step: str, n: int) -> str:
    """ "1. /pricing" or "2. signup": the step's target as an axis label, kinds left out
    (the table under the chart spells them)."""
    kind, _, rest = step.partition(":")
    return f"{n}. {rest if kind in ('page', 'event') else step}"


def _bar_text(step: dict[str, Any]) -> str:
    return f"{humane.number(step['visitors'])} · {step['conversion']:g}%"


def funnel_figure(
    steps: list[dict[str, Any]], breakdown: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A bar per step, labelled with its visitors and conversion from step 1; with a
    breakdown, one bar per value at each step (grouped), the values' own conversions."""
    labels = [step_label(s["step"], n) for n, s in enumerate(steps, start=1)]
    series = breakdown or [{"value": "All visitors", "steps": steps}]
    data = [
        {
            "type": "bar",
            "name": humane.MISSING if row["value"] == "" else row["value"],
            "x": labels,
            "y": [s["visitors"] for s in row["steps"]],
            "text": [_bar_text(s) for s in row["steps"]],
            "textposition": "auto",
            "cliponaxis": False,
            "customdata": [[s["conversion_from_previous"], s["dropped"]] for s in row["steps"]],
            "hovertemplate": (
                "%{x}<br>%{y:,d} visitors · %{text}<br>"
                "%{customdata[0]}% of the previous step, %{customdata[1]:,d} dropped"
                "<extra>%{fullData.name}</extra>"
            ),
        }
        for row in series
    ]
    if not breakdown:
        data[0]["marker"] = {"color": ACCENT}
    layout = _layout(320)
    top = max((s["visitors"] for row in series for s in row["steps"]), default=0)
    layout["yaxis"] = {
        "title": {"text": "Visitors"},
        "tickformat": ",d",
        "rangemode": "tozero",
        "gridcolor": "rgba(128,128,128,0.2)",
        **({"dtick": 1, "range": [0, max(top, 1) * 1.1]} if top < 10 else {}),
    }
    layout["xaxis"] = {"type": "category", "automargin": True}
    if breakdown:
        layout.update(
            barmode="group", showlegend=True, legend={"orientation": "h", "y": 1.15, "x": 0}
        )
    return {"data": data, "layout": layout}


def offset_label(interval: str, offset: int) -> str:
    return f"{interval.capitalize()} {offset}"


def retention_figure(interval: str, cohorts: list[dict[str, Any]]) -> dict[str, Any]:
    """Cohorts as rows (the oldest on top), offsets as columns, each cell the share of its
    cohort that returned; cells whose interval has not begun are left empty (None)."""
    width = max((len(c["values"]) for c in cohorts), default=0)
    x = [offset_label(interval, n) for n in range(width)]
    y = [f"{c['cohort']} ({humane.number(c['size'])})" for c in cohorts]
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    for c in cohorts:
        shares = [v["share"] if c["size"] else None for v in c["values"]]
        z.append(shares + [None] * (width - len(shares)))
        text.append([f"{s:g}%" if s is not None else "" for s in z[-1]])
    layout = _layout(max(160, 28 * len(cohorts) + 56))
    layout["margin"].update({"l": 140, "t": 40, "b": 8})  # the offsets' labels sit on top
    layout["xaxis"] = {"side": "top", "type": "category"}
    layout["yaxis"] = {"autorange": "reversed", "type": "category", "automargin": True}
    return {
        "data": [
            {
                "type": "heatmap",
                "x": x,
                "y": y,
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "zmin": 0,
                "zmax": 100,
                "colorscale": HEAT_SCALE,
                "showscale": False,
                "xgap": 2,
                "ygap": 2,
                "hoverongaps": False,
                "hovertemplate": "%{y}, %{x}: %{text}<extra></extra>",
            }
        ],
        "layout": layout,
    }


def paths_figure(nodes: list[dict[str, Any]], links: list[dict[str, Any]]) -> dict[str, Any]:
    """The API's nodes and links as a Sankey: columns by level, exit (or entry) in red
    (green), merged pages in grey."""
    labels = [f"{n['name']} ({humane.number(n['sessions'])})" for n in nodes]
    layout = _layout(max(320, 36 * max((_per_level(nodes)), default=1) + 60))
    layout["margin"] = {"l": 8, "r": 8, "t": 8, "b": 8}
    return {
        "data": [
            {
                "type": "sankey",
                "arrangement": "snap",
                "valueformat": ",d",
                "valuesuffix": " sessions",
                "node": {
                    "label": labels,
                    "color": [NODE_COLOURS.get(n["kind"], NODE_COLOURS["page"]) for n in nodes],
                    "pad": 14,
                    "thickness": 14,
                },
                "link": {
                    "source": [link["source"] for link in links],
                    "target": [link["target"] for link in links],
                    "value": [link["sessions"] for link in links],
                    "color": "rgba(128,128,128,0.25)",
                },
            }
        ],
        "layout": layout,
    }


def _per_level(nodes: list[dict[str, Any]]) -> list[int]:
    counts: dict[int, int] = {}
    for node in nodes:
        counts[node["level"]] = counts.get(node["level"], 0) + 1
    return list(counts.values())
