"""The Funnels, Retention and Paths pages over HTTP: the numbers are the insights API's for
the same query string, the CSV lists the table's rows, saved reports stay in their project
and with their admins, and no parameter makes a page fail."""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import QueryBudget, Store
from gatrix.meta import accounts, saved_reports

from ..conftest import LiveServer
from ..websession import csrf_of
from .conftest import PASSWORD
from .reports_data import FUNNEL, funnel_rows, seed, tables


@pytest.fixture(scope="module")
def seeded(owner: dict[str, Any], store: Store) -> dict[str, Any]:
    seed(store, owner["project_id"])
    return owner


def _page(web: httpx.Client, project: str, path: str, query: str = "", **headers: str) -> Any:
    return web.get(f"/dashboard/{project}/{path}?{query}", headers=headers)


def _api(web: httpx.Client, project: str, report: str, query: str) -> Any:
    reply = web.get(f"/insights/{project}/{report}?{query}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_funnel_shows_the_apis_numbers_for_its_own_query(seeded: dict[str, Any]) -> None:
    web, project = seeded["web"], seeded["project_id"]
    reply = _page(web, project, "funnels", FUNNEL)
    assert reply.status_code == 200, reply.text
    [table] = tables(reply.text)
    steps = _api(web, project, "funnel", FUNNEL)["steps"]
    assert table[1:] == funnel_rows(steps)
    assert [s["visitors"] for s in steps][:2] >= [5, 4]  # the seeded visits count
    assert 'data-plot="report-chart"' in reply.text and '"type": "bar"' in reply.text
    # with a breakdown: the whole funnel, then a table per value, each the API's
    query = FUNNEL + "&breakdown=countries"
    answer = _api(web, project, "funnel", query)
    shown = tables(_page(web, project, "funnels", query).text)
    assert len(shown) == 1 + len(answer["breakdown"]["rows"]) >= 3
    assert shown[0][1:] == funnel_rows(answer["steps"])
    for table, row in zip(shown[1:], answer["breakdown"]["rows"], strict=True):
        assert table[1:] == funnel_rows(row["steps"])


def test_the_builders_fields_mean_the_same_funnel_and_htmx_gets_the_canonical_url(
    seeded: dict[str, Any],
) -> None:
    web, project = seeded["web"], seeded["project_id"]
    built = (
        "range=30d&kind=page&target=%2F&where=&kind=page&target=%2Fpricing&where="
        "&kind=event&target=signup&where=plan%3Dfree&kind=page&target=&where=&window=7d"
    )
    reply = _page(web, project, "funnels", built, **{"HX-Request": "true"})
    assert reply.status_code == 200
    assert reply.text.lstrip().startswith('<div id="report">')  # the fragment, not a page
    canonical = reply.headers["hx-push-url"]
    assert canonical == (
        f"/dashboard/{project}/funnels?range=30d&step=page%3A%2F&step=page%3A%2Fpricing"
        "&step=event%3Asignup%5Bplan%3Dfree%5D&window=7d"
    )
    steps = _api(web, project, "funnel", canonical.split("?", 1)[1])["steps"]
    assert tables(reply.text)[0][1:] == funnel_rows(steps)
    assert steps[2]["visitors"] == 1  # r5: the only free signup after / and /pricing
    page = _page(web, project, "funnels", canonical.split("?", 1)[1]).text
    assert tables(page) == tables(reply.text)
    # the suggestions come from the project's own events and pages
    assert '<option value="signup">' in page and '<option value="/pricing">' in page


def test_retention_and_paths_show_the_apis_numbers(seeded: dict[str, Any]) -> None:
    web, project = seeded["web"], seeded["project_id"]
    query = "range=30d&interval=week"
    [grid] = tables(_page(web, project, "retention", query).text)
    cohorts = _api(web, project, "retention", query)["cohorts"]
    assert grid[0][:3] == ["Cohort", "Visitors", "Week 0"]
    assert [row[0] for row in grid[1:]] == [c["cohort"] for c in cohorts]
    for row, c in zip(grid[1:], cohorts, strict=True):
        assert row[1] == f"{c['size']:,}"
        assert row[2 : 2 + len(c["values"])] == [f"{v['share']:g}%" for v in c["values"]]
    assert any(v["visitors"] for c in cohorts for v in c["values"][1:])  # r1 and r7 came back
    query = "range=30d&from=%2F&depth=2"
    reply = _page(web, project, "paths", query)
    [transitions] = tables(reply.text)
    answer = _api(web, project, "paths", query)
    names = {n["id"]: n["name"] for n in answer["nodes"]}
    expected = {
        (names[x["source"]], names[x["target"]], f"{x['sessions']:,}") for x in answer["links"]
    }
    assert {(r[1], r[2], r[3]) for r in transitions[1:]} == expected
    # the step in words: from the chosen page to the pages after it
    assert {r[0] for r in transitions[1:]} <= {"the page → 1 after", "1 after → 2 after"}
    assert "the page → 1 after" in {r[0] for r in transitions[1:]}
    assert ("/", "/pricing", "4") in expected and '"type": "sankey"' in reply.text
    assert "exit" in {n["name"] for n in answer["nodes"]}


def _csv(reply: Any) -> list[list[str]]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.match(r'attachment; filename="[\w.-]+\.csv"', reply.headers["content-disposition"])
    return list(csv.reader(io.StringIO(reply.text)))


def test_each_report_downloads_the_rows_it_shows(seeded: dict[str, Any]) -> None:
    web, project = seeded["web"], seeded["project_id"]
    steps = _api(web, project, "funnel", FUNNEL)["steps"]
    rows = _csv(web.get(f"/dashboard/{project}/reports/funnel.csv?{FUNNEL}"))
    assert rows[0][:3] == ["Step", "Visitors", "Conversion"]
    assert [(r[0], int(r[1])) for r in rows[1:]] == [(s["step"], s["visitors"]) for s in steps]
    query = "range=30d&interval=week"
    grid = tables(_page(web, project, "retention", query).text)[0]
    rows = _csv(web.get(f"/dashboard/{project}/reports/retention.csv?{query}"))
    assert [r[0] for r in rows[1:]] == [r[0] for r in grid[1:]]
    query = "range=30d&from=%2F"
    shown = tables(_page(web, project, "paths", query).text)[0]
    rows = _csv(web.get(f"/dashboard/{project}/reports/paths.csv?{query}"))
    assert [r[:3] for r in rows] == [r[:3] for r in shown]
    # a state that cannot run has nothing to download
    assert web.get(f"/dashboard/{project}/reports/funnel.csv?step=page:").status_code == 400
    assert web.get(f"/dashboard/{project}/reports/nope.csv?{FUNNEL}").status_code == 404


HOSTILE = {
    "funnels": [
        "step=page%3A%2F",  # one step
        "&".join(["step=page%3A%2F"] * 9),  # nine
        "&".join(["step=page%3A%2F"] * 500),  # far too many
        "step=page%3A&step=event%3Ax",
        "step=event%3Ax%5B&step=page%3A%2F",
        "step=page%3A%2F" + "a" * 2000 + "&step=page%3A%2F",
        "step=page%3A%2F&step=event%3Ax&window=forever",
        "step=page%3A%2F&step=event%3Ax&window=0m",
        "step=page%3A%2F&step=event%3Ax&window=999d",
        "step=page%3A%2F&step=event%3Ax&breakdown=shoe_size",
        "step=page%3A%2F&step=nope%3Ax",
        "kind=rocket&target=%2F&kind=page&target=%2Fa",
        "step=page%3A%2F&step=event%3Ax%01y",  # a control character
        "step=page%3A%2F&step=page%3A%2F&filter=countries%3Ais",
        "step=page%3A%2F&step=page%3A%2F&filter=shoe%3Ais%3A1",
        "step=page%3A%2F&step=page%3A%2F&range=custom&start=2026-13-45&end=x",
        "step=page%3A%2F&step=page%3A%2F&" + "&".join(["filter=countries%3Ais%3ADE"] * 21),
        "remove=99999999999999999999&add=1",
        "kind=page&target=%2F&kind=page&target=%2Fa&remove=%C2%B2",  # "²": a digit to isdigit()
    ],
    "retention": [
        "interval=hour",
        "interval=week&start=page%3A",
        "interval=week&start=event%3Aa&start=event%3Ab",
        "interval=week&return=event%3Ax%5B",
        "interval=day&range=all",
        "interval=week&start_kind=x&start_target=%2F",
        "interval=day&range=custom&start=2000-01-01&end=2026-01-01",
        "interval=week&start=" + "z" * 2000,
    ],
    "paths": [
        "from=",
        "from=pricing",
        "from=%2F&to=%2F",
        "from=%2F&depth=0",
        "from=%2F&depth=99",
        "from=%2F&depth=x",
        "from=%2F&depth=%C2%B2",  # "²"
        "from=%2F&depth=%D9%A3",  # an Arabic-Indic three
        "from=%2Fa%5Bx%3Dy%5D",
        "to=" + "%2F" * 2000,
        "direction=sideways&page=%2F",
    ],
}


@pytest.mark.parametrize("path", sorted(HOSTILE))
def test_hostile_parameters_are_an_inline_message_never_a_failure(
    seeded: dict[str, Any], path: str
) -> None:
    web, project = seeded["web"], seeded["project_id"]
    for query in HOSTILE[path]:
        reply = _page(web, project, path, query)
        assert reply.status_code in (200, 400), (query[:80], reply.status_code)
        if reply.status_code == 400:
            # the page itself, with the message where the form is
            assert 'class="error report-problem"' in reply.text, query[:80]
            assert '<div id="report">' in reply.text
        swapped = _page(web, project, path, query, **{"HX-Request": "true"})
        assert swapped.status_code == 200, query[:80]
        # htmx swaps only 2xx answers: the message must come as the fragment
        problem = 'class="error report-problem"' in swapped.text
        assert problem == (reply.status_code == 400), query[:80]
        csv_reply = web.get(f"/dashboard/{project}/reports/{path.rstrip('s')}.csv?{query}")
        assert csv_reply.status_code in (200, 400, 404), query[:80]
    # what the API refuses, the page refuses too
    bogus = _page(web, project, path, "range=bogus&step=page%3A%2F&step=page%3A%2Fx&from=%2F")
    assert bogus.status_code == 400 and "Unknown range" in bogus.text
    # the defaults: a builder to fill, the grid of any event, the most viewed pages to start at
    assert "Choose at least two steps" in _page(web, project, "funnels").text
    assert tables(_page(web, project, "retention").text)
    assert 'class="start-page"' in _page(web, project, "paths").text


def _viewer(site: LiveServer, project: str) -> httpx.Client:
    engine = site.services.engine
    email = f"viewer-{uuid.uuid4().hex[:6]}@gatrix.test"
    user = accounts.create_user(engine, email, PASSWORD)
    accounts.grant(engine, user.id, project, "viewer")
    client = httpx.Client(base_url=site.url, timeout=30)
    token = csrf_of(client.get("/login").text)
    reply = client.post("/login", data={"_csrf": token, "email": email, "password": PASSWORD})
    assert reply.status_code == 303, reply.text
    return client


def _other_project(seeded: dict[str, Any]) -> str:
    web = seeded["web"]
    made = web.post(
        "/projects",
        data={
            "_csrf": csrf_of(web.get("/projects").text),
            "name": f"Other {uuid.uuid4().hex[:6]}",
            "origins": "*",
            "timezone": "UTC",
        },
    )
    shown = web.get(made.headers["location"]).text
    return re.search(r'action="/projects/([^/"]+)/settings"', shown).group(1)


def _save(web: httpx.Client, project: str, kind: str, path: str, query: str, name: str) -> Any:
    token = csrf_of(_page(web, project, path, query).text)
    return web.post(
        f"/dashboard/{project}/reports/{kind}/save",
        data={"_csrf": token, "name": name, "query": query},
    )


def test_saved_reports_belong_to_their_project_and_admins(
    site: LiveServer, seeded: dict[str, Any]
) -> None:
    web, project = seeded["web"], seeded["project_id"]
    saved = _save(web, project, "funnel", "funnels", FUNNEL, "Signup  funnel")
    assert saved.status_code == 303
    assert saved.headers["location"].startswith(f"/dashboard/{project}/funnels?{FUNNEL}&flash=")
    landed = web.get(saved.headers["location"]).text
    assert "Saved “Signup funnel”" in landed
    [mine] = [r for r in saved_reports.list_reports(site.services.engine, project, "funnel")]
    assert mine.query == FUNNEL and mine.created_by == "dash@gatrix.test"
    menu = _page(web, project, "funnels").text
    assert f'href="/dashboard/{project}/funnels?{FUNNEL.replace("&", "&amp;")}"' in menu
    # refused names say why, and keep the report in view
    bad = _save(web, project, "funnel", "funnels", FUNNEL, "x" * 101)
    assert "Not saved" in web.get(bad.headers["location"]).text
    assert bad.headers["location"].startswith(f"/dashboard/{project}/funnels?{FUNNEL}&flash=")
    # a saved report is a report of its kind, not any string or a URL elsewhere
    for junk in ("https://evil.example", "//evil.example/x", "#javascript:x", "step=page%3A%2F"):
        refused = _save(web, project, "funnel", "funnels", junk, "junk")
        assert "not a complete report" in web.get(refused.headers["location"]).text
    assert len(saved_reports.list_reports(site.services.engine, project, "funnel")) == 1
    # a viewer sees the menu, not the forms, and is refused both
    viewer = _viewer(site, project)
    seen = _page(viewer, project, "funnels").text
    assert "Signup funnel" in seen and "save-report" not in seen and "delete-saved" not in seen
    token = csrf_of(seen) if 'name="_csrf"' in seen else csrf_of(viewer.get("/projects").text)
    refused = viewer.post(
        f"/dashboard/{project}/reports/funnel/save",
        data={"_csrf": token, "name": "mine", "query": FUNNEL},
    )
    assert refused.status_code == 403
    gone = viewer.post(
        f"/dashboard/{project}/reports/funnel/saved/{mine.id}/delete", data={"_csrf": token}
    )
    assert gone.status_code == 403
    # another project: neither its pages for this viewer, nor this project's reports there
    other = _other_project(seeded)
    assert _page(viewer, other, "funnels").status_code == 404
    assert viewer.get(f"/dashboard/{other}/reports/funnel.csv?{FUNNEL}").status_code == 404
    assert "Signup funnel" not in _page(web, other, "funnels").text
    token = csrf_of(_page(web, other, "funnels").text)
    wrong = web.post(
        f"/dashboard/{other}/reports/funnel/saved/{mine.id}/delete", data={"_csrf": token}
    )
    assert wrong.status_code == 404
    wrong_kind = web.post(
        f"/dashboard/{project}/reports/paths/saved/{mine.id}/delete", data={"_csrf": token}
    )
    assert wrong_kind.status_code == 404
    assert saved_reports.list_reports(site.services.engine, project, "funnel") == [mine]
    # the admin deletes it, with the form's token only
    url = f"/dashboard/{project}/reports/funnel/saved/{mine.id}/delete"
    assert web.post(url).status_code == 403
    in_view = _page(web, project, "funnels", FUNNEL).text
    assert 'name="query" value="' in in_view.split("delete-saved", 1)[1].split("</form>", 1)[0]
    deleted = web.post(url, data={"_csrf": csrf_of(in_view), "query": FUNNEL})
    assert deleted.status_code == 303
    # back to the funnel that was in view, not to an empty builder
    assert deleted.headers["location"].startswith(f"/dashboard/{project}/funnels?{FUNNEL}&flash=")
    assert "Deleted the saved report" in web.get(deleted.headers["location"]).text
    assert saved_reports.list_reports(site.services.engine, project, "funnel") == []


def test_share_links_and_strangers_see_no_reports(site: LiveServer, seeded: dict[str, Any]) -> None:
    web, project = seeded["web"], seeded["project_id"]
    settings = web.get(f"/projects/{project}/settings").text
    made = web.post(f"/projects/{project}/share-links", data={"_csrf": csrf_of(settings)})
    token = re.search(
        r'id="new-share">[^<]*/share/([^<"/\s]+)', web.get(made.headers["location"]).text
    ).group(1)
    with httpx.Client(base_url=site.url) as visitor:
        overview = visitor.get(f"/share/{token}").text
        assert "/funnels" not in overview and "/retention" not in overview
        for path in ("funnels", "retention", "paths", "reports/funnel.csv"):
            assert visitor.get(f"/share/{token}/{path}?{FUNNEL}").status_code == 404
            assert visitor.get(f"/dashboard/{project}/{path}?{FUNNEL}").status_code in (
                401,
                302,
                303,
            )
    # the overview links to each report
    overview = web.get(f"/dashboard/{project}").text
    for path in ("funnels", "retention", "paths"):
        assert f'href="/dashboard/{project}/{path}?range=30d"' in overview


def _figure(page: str) -> Any:
    import json

    [raw] = re.findall(r'<script type="application/json">(.*?)</script>', page, re.S)
    assert "<" not in raw and ">" not in raw  # nothing the HTML parser could read as markup
    return json.loads(raw)


def test_tracked_markup_is_text_in_every_chart(owner: dict[str, Any], store: Store) -> None:
    """Page paths and step text reach the charts' labels, which Plotly renders as a subset of
    HTML: a tracked `<a href>` must stay text and `<!--<script>` must not break the page."""
    from datetime import UTC, datetime, timedelta

    from ..factory import events

    web, project = owner["web"], owner["project_id"]
    link = '/<a href="https://evil.example/">Session expired</a>'
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    visit = [("/pricing", 0), ("/x<!--<script>", 1), (link, 2)]
    events(
        store,
        project,
        [
            {"at": at + timedelta(minutes=m), "device_id": "mx", "session_id": "mx1", "path": p}
            for p, m in visit
        ],
    )
    reply = _page(web, project, "paths", "range=30d&from=%2Fpricing")
    assert reply.status_code == 200
    labels = _figure(reply.text)["data"][0]["node"]["label"]
    assert any("&lt;!--&lt;script&gt;" in label for label in labels)
    assert not any("<a" in label for label in labels)
    query = "range=30d&step=page%3A%2Fpricing&step=page%3A%2Fx%3C!--%3Cscript%3E"
    funnel = _figure(_page(web, project, "funnels", query).text)
    assert any("&lt;script&gt;" in str(x) for x in funnel["data"][0]["x"])


def test_links_between_the_overview_and_reports_keep_range_and_filters(
    seeded: dict[str, Any],
) -> None:
    web, project = seeded["web"], seeded["project_id"]
    scope = "range=7d&filter=country%3Ais%3ADE"
    overview = web.get(f"/dashboard/{project}?{scope}&metric=pageviews").text
    for path in ("funnels", "retention", "paths"):
        assert f'href="/dashboard/{project}/{path}?{scope.replace("&", "&amp;")}"' in overview
    report = _page(web, project, "funnels", scope).text
    assert f'href="/dashboard/{project}?{scope.replace("&", "&amp;")}"' in report
    assert f'href="/dashboard/{project}/paths?{scope.replace("&", "&amp;")}"' in report


def test_a_report_past_the_query_budget_says_so_instead_of_failing(
    seeded: dict[str, Any], site: LiveServer
) -> None:
    web, project = seeded["web"], seeded["project_id"]
    store = site.services.store
    kept, store.budget = store.budget, QueryBudget(rows=1)
    try:
        reply = _page(web, project, "funnels", FUNNEL)
        # the page's answer to every question it cannot answer, with the reason in place
        assert reply.status_code == 400, reply.text
        assert "narrow the date range" in reply.text
        assert 'class="report-form"' in reply.text  # the builder stays, to ask a smaller question
        people = web.get(f"/dashboard/{project}/people")
        assert people.status_code == 422
        assert "narrow the date range" in people.text
        # the overview's CSV downloads say so too, and the settings page stays usable
        for name in ("kpis", "goals", "pages", "sources"):
            download = web.get(f"/dashboard/{project}/export/{name}.csv?range=30d")
            assert download.status_code == 422 and "narrow the date range" in download.text
        settings = web.get(f"/projects/{project}/settings")
        assert settings.status_code == 200 and 'id="stored-too-heavy"' in settings.text
    finally:
        store.budget = kept
