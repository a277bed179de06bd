"""Plotly figures for the dashboard, as plain figure dicts (plotly.js draws them; the only
module that knows Plotly's figure format). Colours come from CSS at draw time, so figures
follow the light/dark preference without being rebuilt."""

from __future__ import annotations

from typing import Any

LABELS = {
    "visitors": "Visitors",
    "sessions": "Sessions",
    "pageviews": "Page views",
    "events": "Custom events",
    "bounce_rate": "Bounce rate (%)",
    "avg_session_duration": "Visit duration (s)",
    "views_per_session": "Views per session",
}


def _layout(height: int) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 48, "r": 16, "t": 8, "b": 36},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.12, "x": 0},
        "hovermode": "x unified",
        "xaxis": {"showgrid": False},
        "yaxis": {"rangemode": "tozero", "gridcolor": "rgba(128,128,128,0.2)"},
    }


def timeseries_figure(series: dict[str, Any]) -> dict[str, Any]:
    metric = series["metric"]
    x = [p["bucket"] for p in series["points"]]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "This period",
            "x": x,
            "y": [p["value"] for p in series["points"]],
            "line": {"width": 2.5},
            "fill": "tozeroy",
            "fillcolor": "rgba(37,99,235,0.08)",
        }
    ]
    previous = series.get("previous")
    if previous:
        # drawn against the current period's buckets so the two lines overlay
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Previous period",
                "x": x[: len(previous)],
                "y": [p["value"] for p in previous][: len(x)],
                "line": {"width": 1.5, "dash": "dot"},
                "customdata": [p["bucket"] for p in previous][: len(x)],
                "hovertemplate": "%{customdata}: %{y}<extra>previous</extra>",
            }
        )
    layout = _layout(300)
    layout["yaxis"]["title"] = {"text": LABELS.get(metric, metric)}
    return {"data": data, "layout": layout}


def per_minute_figure(per_minute: list[dict[str, Any]]) -> dict[str, Any]:
    layout = _layout(220)
    layout["showlegend"] = False
    return {
        "data": [
            {
                "type": "bar",
                "name": "Page views",
                # wall-clock time in the project's zone: plotly.js would shift a time with an
                # offset into the viewer's zone, so the offset is left out
                "x": [m["minute"][:19] for m in per_minute],
                "y": [m["pageviews"] for m in per_minute],
            }
        ],
        "layout": layout,
    }


def bars_figure(rows: list[dict[str, Any]], value_key: str = "visitors") -> dict[str, Any]:
    """Horizontal bars for the top rows of a breakdown (the Locations panel's chart)."""
    top = list(reversed(rows[:10]))
    layout = _layout(max(160, 28 * len(top) + 40))
    layout["showlegend"] = False
    layout["margin"]["l"] = 90
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [r[value_key] for r in top],
                "y": [r["value"] or "(unknown)" for r in top],
            }
        ],
        "layout": layout,
    }
