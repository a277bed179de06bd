"""The report pages' URL state: the builder's fields and the API's parameters read into the
same state, whose canonical query is the API's; what cannot run is a sentence, not an
exception."""

from __future__ import annotations

from urllib.parse import parse_qsl

from litestar.datastructures import MultiDict

from gatrix.web.report_view import StepRow, read_funnel, read_paths, read_retention


def _params(query: str) -> MultiDict:
    return MultiDict(parse_qsl(query, keep_blank_values=True))


def test_the_builder_and_the_api_parameters_are_one_funnel() -> None:
    built = read_funnel(
        _params(
            "range=7d&kind=page&target=/&where=&kind=event&target=signup&where=plan%3Dpro"
            "&kind=page&target=&where=&window=1h&breakdown=countries"
        )
    )
    assert built.ready and built.steps() == ["page:/", "event:signup[plan=pro]"]
    canonical = built.query_string()
    assert canonical == (
        "range=7d&step=page%3A%2F&step=event%3Asignup%5Bplan%3Dpro%5D&window=1h&breakdown=countries"
    )
    again = read_funnel(_params(canonical))
    assert again.query_string() == canonical
    assert [(r.kind, r.target, r.where) for r in again.rows] == [
        ("page", "/", ""),
        ("event", "signup", "plan=pro"),
    ]
    # several conditions keep their brackets in the builder
    row = StepRow.from_text("event:buy[plan=pro][coupon=X]")
    assert row.where == "[plan=pro][coupon=X]" and row.text() == "event:buy[plan=pro][coupon=X]"


def test_add_and_remove_work_without_javascript() -> None:
    three = "kind=page&target=/a&kind=page&target=/b&kind=page&target=/c"
    assert read_funnel(_params(three + "&remove=1")).steps() == ["page:/a", "page:/c"]
    added = read_funnel(_params(three + "&add=1"))
    assert len(added.shown_rows()) == 4 and added.shown_rows()[3].blank
    assert added.steps() == ["page:/a", "page:/b", "page:/c"]
    # an empty page asks for two rows; ✕ on a row that is not there changes nothing
    assert len(read_funnel(_params("")).shown_rows()) == 2
    assert read_funnel(_params(three + "&remove=7")).steps() == ["page:/a", "page:/b", "page:/c"]


def test_what_cannot_run_says_why() -> None:
    cases = {
        "step=page:/": "2 to 8 steps; this one has 1",
        "step=page:&step=page:/": "names no path",
        "step=page:/&step=rocket:x": "must start with page: or event:",
        "step=page:/&step=event:x[": "conditions are written [property=value]",
        "step=page:/&step=page:/&window=2w": "Window: window must be",
        "step=page:/&step=page:/&breakdown=shoe": "Breakdown: unknown dimension 'shoe'",
        "&".join(["step=page:/"] * 9): "this one has 9",
        "&".join(["step=page:/"] * 21): "8 steps at most",
        "step=page:/&step=page:/&" + "&".join(["filter=countries:is:DE"] * 21): "at most 20",
    }
    for query, reason in cases.items():
        state = read_funnel(_params(query))
        assert not state.ready and reason in (state.problem or state.range.problem), query
    assert "Interval must be" in read_retention(_params("interval=year")).problem
    assert "names no event" in read_retention(_params("return=event:")).problem
    assert "not both" in read_paths(_params("from=/a&to=/b")).problem
    assert "Depth must be" in read_paths(_params("from=/a&depth=6")).problem


def test_retention_and_paths_canonical_queries_are_the_apis() -> None:
    state = read_retention(
        _params(
            "range=custom&start=2026-01-01&end=2026-02-01&interval=day"
            "&start_kind=event&start_target=signup&start_where=&return_kind=page"
            "&return_target=/app/*&return_where="
        )
    )
    assert state.ready
    assert state.query_string() == (
        "range=custom&start=2026-01-01&end=2026-02-01&interval=day"
        "&start=event%3Asignup&return=page%3A%2Fapp%2F%2A"
    )
    assert read_retention(_params(state.query_string())).query_string() == state.query_string()
    # the form's empty boxes mean any event
    assert read_retention(_params("interval=week&start_kind=event&start_target=")).ready
    paths = read_paths(_params("range=7d&direction=to&page=/pricing&depth=2"))
    assert paths.ready and paths.query_string() == "range=7d&to=%2Fpricing&depth=2"
    assert read_paths(_params(paths.query_string())) == paths
