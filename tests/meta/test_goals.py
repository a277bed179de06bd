"""Goal definitions on every SQL database we support: created, listed per project, deleted
only by their project, bounded in number, and deleted with their project."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from gatrix.meta import accounts, goals, models
from gatrix.meta.projects import create_project

from .test_metadata_db import fresh_engine  # noqa: F401  (the per-backend engine)


def test_goals_round_trip(fresh_engine: Engine) -> None:  # noqa: F811
    engine = fresh_engine
    models.migrate(engine)
    one = create_project(engine, "one").project_id
    two = create_project(engine, "two").project_id
    signup = goals.create_goal(engine, one, {"name": "Signup", "event": "signup"})
    thanks = goals.create_goal(
        engine, one, {"page": "/thanks/*", "revenue_property": "amount", "name": "Ünïcode ✓"}
    )
    assert [g.step for g in goals.list_goals(engine, one)] == ["event:signup", "page:/thanks/*"]
    assert goals.list_goals(engine, two) == []
    assert goals.get_goal(engine, two, signup.id) is None
    assert goals.get_goal(engine, one, thanks.id) == thanks and thanks.name == "Ünïcode ✓"
    assert not goals.delete_goal(engine, two, signup.id)
    assert goals.delete_goal(engine, one, signup.id)
    assert [g.id for g in goals.list_goals(engine, one)] == [thanks.id]
    for n in range(goals.MAX_GOALS - 1):
        goals.create_goal(engine, two, {"event": f"e{n}"})
    goals.create_goal(engine, two, {"event": "last"})
    with pytest.raises(goals.InvalidGoal):
        goals.create_goal(engine, two, {"event": "one too many"})
    accounts.delete_project_rows(engine, two)
    assert goals.list_goals(engine, two) == []
    assert len(goals.list_goals(engine, one)) == 1


def test_parallel_creations_never_pass_the_cap(fresh_engine: Engine) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    from gatrix.meta import segments

    engine = fresh_engine
    models.migrate(engine)
    project = create_project(engine, "race").project_id
    for n in range(goals.MAX_GOALS - 5):
        goals.create_goal(engine, project, {"event": f"e{n}"})

    def goal(n: int) -> bool:
        try:
            goals.create_goal(engine, project, {"event": f"race{n}"})
        except goals.InvalidGoal:
            return False
        return True

    def segment(n: int) -> bool:
        try:
            segments.create_segment(
                engine, project, {"name": f"s{n}", "filters": ["countries:is:DE"]}
            )
        except segments.InvalidSegment:
            return False
        return True

    # 40 requests for the last 5 places, 8 at a time: each counts before the others insert
    with ThreadPoolExecutor(8) as pool:
        made = sum(pool.map(goal, range(40)))
        made_segments = sum(pool.map(segment, range(segments.MAX_SEGMENTS + 30)))
    assert made <= 5 and len(goals.list_goals(engine, project)) == goals.MAX_GOALS
    assert made_segments == len(segments.list_segments(engine, project)) == segments.MAX_SEGMENTS


def test_a_creation_committed_out_of_id_order_still_keeps_the_cap(
    fresh_engine: Engine,  # noqa: F811
) -> None:
    """The first creator inserts the last place's row and is slow to commit; the second
    creator must not take a place as well (on a server database its later id can check,
    and pass, before the earlier row is visible)."""
    import threading
    import time

    from sqlalchemy import event
    from sqlmodel import Session

    engine = fresh_engine
    models.migrate(engine)
    project = create_project(engine, "order").project_id
    for n in range(goals.MAX_GOALS - 1):
        goals.create_goal(engine, project, {"event": f"e{n}"})
    inserted = threading.Event()

    def slow_first_commit(session: Session, _context: object) -> None:
        if threading.current_thread().name == "first" and not inserted.is_set():
            inserted.set()  # its row has an id now, not yet visible to anyone else
            time.sleep(1.0)

    results: dict[str, bool] = {}

    def create(name: str) -> None:
        try:
            goals.create_goal(engine, project, {"event": name})
            results[name] = True
        except goals.InvalidGoal:
            results[name] = False

    event.listen(Session, "after_flush", slow_first_commit)
    try:
        first = threading.Thread(target=create, args=("first",), name="first")
        first.start()
        assert inserted.wait(10)
        second = threading.Thread(target=create, args=("second",), name="second")
        second.start()
        first.join(20)
        second.join(20)
    finally:
        event.remove(Session, "after_flush", slow_first_commit)
    assert len(goals.list_goals(engine, project)) == goals.MAX_GOALS
    assert sorted(results.values()) == [False, True]
