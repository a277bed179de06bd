"""The time series figure: what it asks plotly.js for, and what plotly.js (in Chromium)
then draws: whole-number ticks for counts, the last bucket labelled, gaps where a ratio has
no sessions, durations and rates in human units."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from gatrix.web import charts

from ..conftest import needs_chromium

WEEK = [f"2026-03-0{d}T00:00:00+09:00" for d in range(1, 8)]


def series(metric: str, values: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "metric": metric,
        "interval": "day",
        "range": {},
        "points": [{"bucket": b, "value": v} for b, v in zip(WEEK, values, strict=False)],
        "axis": WEEK,
        **extra,
    }


def test_counts_have_whole_number_ticks() -> None:
    layout = charts.timeseries_figure(series("visitors", [0, 1, 2, 1, 0, 0, 1]))["layout"]
    assert layout["yaxis"]["dtick"] == 1 and layout["yaxis"]["tickformat"] == ",d"
    big = charts.timeseries_figure(series("pageviews", [0, 120, 300, 1, 0, 0, 1]))["layout"]
    assert big["yaxis"]["tickformat"] == ",d" and "dtick" not in big["yaxis"]


def test_every_bucket_of_the_range_is_on_the_axis_and_the_last_is_labelled() -> None:
    today = series("visitors", [3, 1, 4])  # three days so far, the axis is the whole week
    fig = charts.timeseries_figure(today)
    assert fig["data"][0]["x"] == [b[:19] for b in WEEK[:3]]
    xaxis = fig["layout"]["xaxis"]
    assert xaxis["tickvals"][-1] == "2026-03-07T00:00:00" and xaxis["ticktext"][-1] == "Mar 7"
    assert xaxis["range"] == ["2026-02-28T12:00:00", "2026-03-07T12:00:00"]
    month = [f"2026-03-{d:02d}T00:00:00+00:00" for d in range(1, 32)]
    long = charts.timeseries_figure({**series("visitors", []), "axis": month})["layout"]["xaxis"]
    assert len(long["tickvals"]) <= charts.MAX_TICKS and long["ticktext"][-1] == "Mar 31"


def test_notes_are_one_marker_per_day_at_its_start_and_escaped() -> None:
    notes = [
        {"day": "2026-03-03", "text": "v2.3 <b>released</b>"},
        {"day": "2026-03-03", "text": "blog post"},
        {"day": "2026-02-20", "text": "before the first bucket"},
    ]
    layout = charts.timeseries_figure(series("visitors", [1, 2, 3]), notes)["layout"]
    assert [s["x0"] for s in layout["shapes"]] == ["2026-03-01T00:00:00", "2026-03-03T00:00:00"]
    assert all(s["yref"] == "paper" and s["x0"] == s["x1"] for s in layout["shapes"])
    assert layout["annotations"][1]["hovertext"] == (
        "2026-03-03: v2.3 &lt;b&gt;released&lt;/b&gt;<br>2026-03-03: blog post"
    )
    plain = charts.timeseries_figure(series("visitors", [1, 2, 3]))["layout"]
    assert "shapes" not in plain and "annotations" not in plain


def test_gaps_stay_gaps_and_the_previous_period_overlays() -> None:
    previous = [{"bucket": f"2026-02-2{d}T00:00:00+09:00", "value": 50.0} for d in range(2, 9)]
    fig = charts.timeseries_figure(
        series("bounce_rate", [None, 40.0, None, 60.0], previous=previous)
    )
    now, before = fig["data"]
    assert now["y"] == [None, 40.0, None, 60.0] and now["connectgaps"] is False
    assert before["x"] == [b[:19] for b in WEEK] and before["connectgaps"] is False
    assert [c[1] for c in now["customdata"]] == ["—", "40%", "—", "60%"]
    assert "fill" not in now  # one filled area would span the gaps
    assert fig["layout"]["yaxis"]["ticksuffix"] == "%"
    assert fig["layout"]["yaxis"]["range"] == [0, 100]


def test_durations_read_as_durations() -> None:
    fig = charts.timeseries_figure(series("avg_session_duration", [None, 224.0, 95.5]))
    assert [c[1] for c in fig["data"][0]["customdata"]] == ["—", "3m 44s", "1m 36s"]
    yaxis = fig["layout"]["yaxis"]
    assert yaxis["ticktext"][:3] == ["0s", "1m 00s", "2m 00s"]
    assert yaxis["tickvals"][-1] >= 224


def test_views_per_session_has_its_own_series() -> None:
    fig = charts.timeseries_figure(series("views_per_session", [None, 2.5, 1.0]))
    assert fig["data"][0]["y"] == [None, 2.5, 1.0]
    assert fig["layout"]["yaxis"]["title"]["text"] == "Views per visit"


@needs_chromium
def test_plotly_draws_what_the_figure_asks(browser: Any) -> None:
    plotly = resources.files("plotly").joinpath("package_data/plotly.min.js")
    page = browser.new_page()
    try:
        page.set_content("<div id='c' style='width:720px'></div>")
        page.add_script_tag(path=str(plotly))

        def draw(figure: dict[str, Any]) -> dict[str, Any]:
            page.evaluate("f => Plotly.newPlot('c', f.data, f.layout)", figure)
            return page.evaluate(
                """() => ({
                    x: [...document.querySelectorAll('#c .xtick text')].map(t => t.textContent),
                    y: [...document.querySelectorAll('#c .ytick text')].map(t => t.textContent),
                    lines: document.querySelectorAll('#c .scatterlayer .js-line').length,
                    fills: document.querySelectorAll('#c .scatterlayer .js-fill').length,
                })"""
            )

        small = draw(charts.timeseries_figure(series("visitors", [0, 1, 2, 1, 0, 0, 1])))
        assert small["x"][-1] == "Mar 7" and len(small["x"]) == 7
        assert small["y"] == ["0", "1", "2"]  # no 0.5
        gaps = draw(charts.timeseries_figure(series("bounce_rate", [None, 40, 50, None, 70, 80])))
        # two segments, no line or filled area across the gap
        assert (gaps["lines"], gaps["fills"]) == (2, 0)
        assert gaps["y"] == ["0%", "25%", "50%", "75%", "100%"]
        durations = draw(charts.timeseries_figure(series("avg_session_duration", [30, 224])))
        assert "3m 00s" in durations["y"] and all("." not in t for t in durations["y"])
    finally:
        page.close()


@pytest.mark.parametrize("dimension", ["countries", ""])
def test_location_bars_label_countries(dimension: str) -> None:
    rows = [{"value": "DE", "visitors": 3}, {"value": "", "visitors": 1}]
    fig = charts.bars_figure(rows, dimension=dimension)
    expected = ["Unknown", "Germany"] if dimension else ["(unknown)", "DE"]
    assert fig["data"][0]["y"] == expected
    assert fig["layout"]["xaxis"]["dtick"] == 1


def test_hours_over_several_days_carry_their_day() -> None:
    """An hourly axis over a week says which day each tick is, a single day does not."""
    week = [f"2026-11-{20 + d:02d}T{h:02d}:00:00+01:00" for d in range(7) for h in range(24)]
    _, labels = charts._ticks(week, "hour")
    assert labels[-1] == "Nov 26 23:00" and all(" " in label for label in labels)
    _, one_day = charts._ticks(week[-24:], "hour")
    assert one_day[-1] == "23:00"
