"""The secret checks of the client directory, against a real SQL database and scrypt: many
requests with the right secret at once are never refused as guesses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatrix.meta.projects import Directory, SecretsThrottled, create_project


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
