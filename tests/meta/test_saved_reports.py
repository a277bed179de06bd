"""Saved reports on every SQL database we support: per project and kind, validated, bounded
in number, deleted only by their own project and kind, and deleted with their project."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gatrix.meta import accounts, models, saved_reports
from gatrix.meta.models import SavedView
from gatrix.meta.projects import create_project
from gatrix.meta.saved_reports import InvalidSavedReport, add_report, delete_report, list_reports

from .test_metadata_db import fresh_engine  # noqa: F401  (the per-backend engine)

QUERY = "range=30d&step=page%3A%2F&step=event%3Asignup&window=1h"


def test_saved_reports_round_trip(fresh_engine: Engine) -> None:  # noqa: F811
    engine = fresh_engine
    models.migrate(engine)
    one = create_project(engine, "one").project_id
    two = create_project(engine, "two").project_id
    made = add_report(engine, one, "funnel", "  Signup\tfunnel ✓ ", "?" + QUERY, "a@b.co")
    assert (made.name, made.query, made.created_by) == ("Signup funnel ✓", QUERY, "a@b.co")
    paths = add_report(engine, one, "paths", "After pricing", "range=7d&from=%2Fpricing", "")
    assert list_reports(engine, one, "funnel") == [made]
    assert list_reports(engine, one, "paths") == [paths]
    assert list_reports(engine, two, "funnel") == []
    # a segment saved on the same table is no report of ours
    with Session(engine) as db:
        db.add(SavedView(project_id=one, kind="segment", name="DE", query="filter=countries:is:DE"))
        db.commit()
    assert list_reports(engine, one, "funnel") == [made]
    # another project, another kind, a missing id: nothing is deleted
    assert not delete_report(engine, two, "funnel", made.id)
    assert not delete_report(engine, one, "paths", made.id)
    assert not delete_report(engine, one, "funnel", 10**9)
    assert delete_report(engine, one, "funnel", made.id)
    assert list_reports(engine, one, "funnel") == []
    # at most MAX_PER_KIND per project and kind; the other project and kind are unaffected
    for n in range(saved_reports.MAX_PER_KIND):
        add_report(engine, two, "retention", f"r{n:02d}", "interval=week", "")
    with pytest.raises(InvalidSavedReport, match="at most 50"):
        add_report(engine, two, "retention", "one too many", "interval=week", "")
    add_report(engine, two, "funnel", "still fine", QUERY, "")
    add_report(engine, one, "retention", "also fine", "interval=day", "")
    names = [r.name for r in list_reports(engine, two, "retention")]
    assert names == sorted(names) and len(names) == saved_reports.MAX_PER_KIND
    accounts.delete_project_rows(engine, two)
    assert list_reports(engine, two, "retention") == list_reports(engine, two, "funnel") == []
    assert [r.name for r in list_reports(engine, one, "retention")] == ["also fine"]


@pytest.mark.parametrize(
    ("kind", "name", "query", "reason"),
    [
        ("segment", "x", QUERY, "one of funnel"),
        ("funnels", "x", QUERY, "one of funnel"),
        ("funnel", "", QUERY, "give the report a name"),
        ("funnel", "   ", QUERY, "give the report a name"),
        ("funnel", "x" * 101, QUERY, "at most 100 printable"),
        ("funnel", "bell\x07", QUERY, "at most 100 printable"),
        ("funnel", "x", "step=" + "a" * 4096, "longer than 4096 bytes"),
        ("funnel", "x", "step=" + "é" * 2100, "longer than 4096 bytes"),  # bytes, not chars
        ("funnel", "x", "step=page:/a b", "not a URL query string"),
        ("funnel", "x", "step=\x00", "not a URL query string"),
    ],
)
def test_refused_reports_say_why(kind: str, name: str, query: str, reason: str) -> None:
    with pytest.raises(InvalidSavedReport, match=reason):
        saved_reports.clean_name(name)
        saved_reports.clean_query(query)
        saved_reports._kind(kind)
    assert saved_reports.clean_name("x" * 100) == "x" * 100
    assert saved_reports.clean_query("step=a" + "b" * 4090) == "step=a" + "b" * 4090
