"""Plotly figures for the dashboard, as plain figure dicts (plotly.js draws them; the only
module that knows Plotly's figure format). Colours come from CSS at draw time, so figures
follow the light/dark preference without being rebuilt."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from gatrix.web import humane

LABELS = {
    "visitors": "Visitors",
    "sessions": "Visits",
    "pageviews": "Page views",
    "events": "Custom events",
    "bounce_rate": "Bounce rate",
    "avg_session_duration": "Visit duration",
    "views_per_session": "Views per visit",
    "revenue": "Revenue",
}
COUNT_METRICS = ("visitors", "sessions", "pageviews", "events")
MAX_TICKS = 8
HALF_BUCKET = {
    "minute": timedelta(seconds=30),
    "hour": timedelta(minutes=30),
    "day": timedelta(hours=12),
    "week": timedelta(days=3, hours=12),
    "month": timedelta(days=15),
}
# steps for a duration axis, in seconds: the first that keeps the ticks few is used
DURATION_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def _layout(height: int) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 8, "b": 36},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.12, "x": 0},
        "hovermode": "x unified",
        "xaxis": {"showgrid": False},
        "yaxis": {"rangemode": "tozero", "gridcolor": "rgba(128,128,128,0.2)"},
    }


def _wall_clock(bucket: str) -> str:
    # plotly.js reads the wall-clock part of an ISO time and ignores its offset; leaving the
    # offset out says so, and every bucket stays at the project's local time
    return bucket[:19]


def _tick_label(bucket: str, interval: str, with_day: bool = False) -> str:
    """ "14:00", "Mar 5 14:00" (hours over several days), "Mar 5" or "Mar 2026": the
    bucket's wall-clock time in the project's zone."""
    moment = datetime.fromisoformat(_wall_clock(bucket))
    if interval in ("minute", "hour"):
        return f"{moment:%b} {moment.day} {moment:%H:%M}" if with_day else f"{moment:%H:%M}"
    if interval == "month":
        return f"{moment:%b %Y}"
    return f"{moment:%b} {moment.day}"


def _ticks(axis: list[str], interval: str) -> tuple[list[str], list[str]]:
    """At most MAX_TICKS evenly spaced buckets, counted back from the last one, so the last
    bucket always has its label (plotly's own choice may leave it out)."""
    step = max(1, -(-len(axis) // MAX_TICKS))
    picked = axis[::-1][::step][::-1]
    several_days = bool(axis) and axis[0][:10] != axis[-1][:10]
    labels = [_tick_label(b, interval, several_days) for b in picked]
    return [_wall_clock(b) for b in picked], labels


def _value_label(metric: str, value: float | None) -> str:
    if value is None:
        return humane.MISSING
    if metric == "avg_session_duration":
        return humane.duration(value)
    if metric == "bounce_rate":
        return humane.percent(value)
    return humane.number(value)


def _duration_ticks(top: float) -> tuple[list[float], list[str]]:
    step = next((s for s in DURATION_STEPS if top / s <= 5), DURATION_STEPS[-1])
    count = max(1, -(-int(top) // step))
    values = [float(i * step) for i in range(count + 1)]
    return values, [humane.duration(v) for v in values]


def _yaxis(metric: str, values: list[float]) -> dict[str, Any]:
    top = max(values, default=0.0)
    axis: dict[str, Any] = {"title": {"text": LABELS.get(metric, metric)}}
    if metric in COUNT_METRICS:
        # whole numbers only: never a 0.5 visitor tick
        axis["tickformat"] = ",d"
        if top < 10:
            axis.update(dtick=1, tick0=0, range=[0, max(top, 1) * 1.05])
    elif metric == "bounce_rate":
        axis.update(range=[0, 100], ticksuffix="%", dtick=25)
    elif metric == "avg_session_duration":
        tickvals, ticktext = _duration_ticks(top)
        axis.update(tickvals=tickvals, ticktext=ticktext, range=[0, tickvals[-1] * 1.05])
    return axis


def timeseries_figure(
    series: dict[str, Any], notes: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The range's buckets up to now against the whole previous period (dotted), on an axis
    spanning the whole range; None values (a ratio without sessions) are gaps. `notes`
    (`{"day", "text"}`, days inside the range) are drawn as vertical markers."""
    metric, interval = series["metric"], series["interval"]
    points = series["points"]
    axis = series.get("axis") or [p["bucket"] for p in points]
    x = [_wall_clock(p["bucket"]) for p in points]
    y = [p["value"] for p in points]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            # markers too: a value between two gaps is a single point, drawn only as a marker
            "mode": "lines+markers",
            "name": "This period",
            "x": x,
            "y": y,
            "connectgaps": False,
            "line": {"width": 2.5},
            "customdata": [
                [_tick_label(p["bucket"], interval), _value_label(metric, p["value"])]
                for p in points
            ],
            # the unified hover's header already names the bucket
            "hovertemplate": "%{customdata[1]}<extra>this period</extra>",
        }
    ]
    if None not in y:
        # plotly fills one area across gaps, which would draw values that are not there
        data[0].update(fill="tozeroy", fillcolor="rgba(37,99,235,0.08)")
    previous = (series.get("previous") or [])[: len(axis)]
    if previous:
        # drawn at the current period's buckets so the two lines overlay
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Previous period",
                "x": [_wall_clock(b) for b in axis[: len(previous)]],
                "y": [p["value"] for p in previous],
                "connectgaps": False,
                "line": {"width": 1.5, "dash": "dot"},
                "customdata": [
                    [_tick_label(p["bucket"], interval), _value_label(metric, p["value"])]
                    for p in previous
                ],
                "hovertemplate": "%{customdata[0]}: %{customdata[1]}<extra>previous</extra>",
            }
        )
    layout = _layout(300)
    if axis:
        tickvals, ticktext = _ticks(axis, interval)
        layout["xaxis"].update(
            type="date",
            tickmode="array",
            tickvals=tickvals,
            ticktext=ticktext,
            # half a bucket of room on both sides, so the first and last labels fit
            range=_padded(axis, interval),
        )
    shown = [v for trace in data for v in trace["y"] if v is not None]
    layout["yaxis"].update(_yaxis(metric, shown))
    if notes and axis:
        layout.update(_note_marks(notes, _wall_clock(axis[0])))
    return {"data": data, "layout": layout}


NOTE_COLOUR = "rgba(217,119,6,0.85)"


def _note_marks(notes: list[dict[str, str]], first: str) -> dict[str, list[dict[str, Any]]]:
    """A dashed vertical line at the start of each noted day (the range's first bucket for a
    day that began before it) and a marker at its top whose hover shows the notes; one mark
    per day, however many notes it has."""
    by_day: dict[str, list[str]] = {}
    for note in notes:
        by_day.setdefault(note["day"], []).append(note["text"])
    shapes, marks = [], []
    for day, texts in sorted(by_day.items()):
        x = max(f"{day}T00:00:00", first)
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": x,
                "x1": x,
                "y0": 0,
                "y1": 1,
                "line": {"color": NOTE_COLOUR, "width": 1, "dash": "dash"},
            }
        )
        # plotly.js reads a subset of HTML in texts: the notes are escaped to stay text
        marks.append(
            {
                "x": x,
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "yanchor": "top",
                "showarrow": False,
                "text": "◆",
                "font": {"color": NOTE_COLOUR},
                "hovertext": "<br>".join(f"{day}: {escape(t)}" for t in texts),
                "captureevents": True,
            }
        )
    return {"shapes": shapes, "annotations": marks}


def _padded(axis: list[str], interval: str) -> list[str]:
    first = datetime.fromisoformat(_wall_clock(axis[0]))
    last = datetime.fromisoformat(_wall_clock(axis[-1]))
    half = HALF_BUCKET[interval]
    return [(first - half).isoformat(), (last + half).isoformat()]


def per_minute_figure(per_minute: list[dict[str, Any]]) -> dict[str, Any]:
    layout = _layout(220)
    layout["showlegend"] = False
    layout["yaxis"].update(_yaxis("pageviews", [m["pageviews"] for m in per_minute]))
    return {
        "data": [
            {
                "type": "bar",
                "name": "Page views",
                "x": [_wall_clock(m["minute"]) for m in per_minute],
                "y": [m["pageviews"] for m in per_minute],
            }
        ],
        "layout": layout,
    }


def bars_figure(
    rows: list[dict[str, Any]], value_key: str = "visitors", dimension: str = ""
) -> dict[str, Any]:
    """Horizontal bars for the top rows of a breakdown (the Locations panel's chart); with
    the `dimension`, values are labelled as the tables show them ("Germany")."""
    top = list(reversed(rows[:10]))
    layout = _layout(max(160, 28 * len(top) + 40))
    layout["showlegend"] = False
    layout["margin"]["l"] = 90
    layout["yaxis"]["automargin"] = True  # "United Kingdom" must not lose its first letters
    layout["xaxis"].update(tickformat=",d")
    if max((r[value_key] for r in top), default=0) < 10:
        layout["xaxis"].update(dtick=1, tick0=0)
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [r[value_key] for r in top],
                "y": [
                    humane.dimension_value(dimension, r["value"])
                    if dimension
                    else r["value"] or "(unknown)"
                    for r in top
                ],
            }
        ],
        "layout": layout,
    }
