"""The secret checks of the client directory, against a real SQL database and scrypt: many
requests with the right secret at once are never refused as guesses."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gatrix.meta import projects
from gatrix.meta.projects import (
    SECRET_FAILURE_WINDOW_S,
    Directory,
    SecretsThrottled,
    create_project,
)


async def test_a_burst_with_the_right_secret_is_one_check_not_forty_guesses(
    sql_engine: Any,
) -> None:
    made = create_project(sql_engine, "burst")
    directory = Directory(sql_engine)
    info = await directory.client(made.client_id)
    assert info is not None
    # the verified-secret cache has lapsed (or never held it) and 40 requests arrive at once
    answers = await asyncio.gather(
        *(directory.secret_ok(info, made.client_secret, "10.0.0.1") for _ in range(40))
    )
    assert answers == [True] * 40


async def test_distinct_wrong_secrets_still_spend_the_budget(sql_engine: Any) -> None:
    made = create_project(sql_engine, "guesses")
    directory = Directory(sql_engine)
    directory.secret_failures = 3
    info = await directory.client(made.client_id)
    assert info is not None
    # the same wrong secret sent 10 times at once is one check and one failure
    same = await asyncio.gather(
        *(directory.secret_ok(info, "wrong", "10.0.0.2") for _ in range(10))
    )
    assert same == [False] * 10
    for n in range(2):
        assert await directory.secret_ok(info, f"wrong-{n}", "10.0.0.2") is False
    with pytest.raises(SecretsThrottled):
        await directory.secret_ok(info, "wrong-3", "10.0.0.2")


async def test_a_burst_across_the_end_of_a_window_gets_the_budget_once(
    sql_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is a sliding window: guesses spent just before a window would have ended
    still count just after it (a fixed window let such a burst have the budget twice)."""
    made = create_project(sql_engine, "straddle")
    directory = Directory(sql_engine)
    directory.secret_failures = 3
    info = await directory.client(made.client_id)
    assert info is not None
    clock = [1000.0]
    # the directory's clock only (the event loop keeps the real one)
    monkeypatch.setattr(projects, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    assert await directory.secret_ok(info, "first", "10.0.0.3") is False
    clock[0] += SECRET_FAILURE_WINDOW_S - 0.1
    for n in range(2):
        assert await directory.secret_ok(info, f"late-{n}", "10.0.0.3") is False
    clock[0] += 0.2  # the first guess is out of the window, the two late ones are not
    assert await directory.secret_ok(info, "after", "10.0.0.3") is False
    with pytest.raises(SecretsThrottled):
        await directory.secret_ok(info, "after-2", "10.0.0.3")
    clock[0] += SECRET_FAILURE_WINDOW_S  # a whole quiet window later: the budget is back
    assert await directory.secret_ok(info, "much-later", "10.0.0.3") is False
    assert await directory.secret_ok(info, made.client_secret, "10.0.0.3") is True
