"""Property-based: thousands of random bodies and headers at /track and /track/batch.

Invariants: never a 5xx, always a JSON (or empty) reply, and the rows that reach ClickHouse
are exactly the events the server answered 200 for — an invalid body never stores anything.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatrix.clickhouse.store import Store
from gatrix.ingest.payloads import RESERVED
from gatrix.meta.projects import NewClient, create_project

from ..conftest import CHROME_UA, wait_for

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
reserved_keys = st.sampled_from([*RESERVED, "plain"])
properties = st.dictionaries(reserved_keys | st.text(max_size=20), json_values, max_size=6)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=220) | json_values,
        "properties": properties | json_values,
        "profileId": st.text(max_size=20) | json_values,
        "property": st.text(max_size=10) | json_values,
        "value": json_values,
        "path": st.text(max_size=30) | json_values,
        "firstName": st.text(max_size=10) | json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "increment", "decrement", "alias", "x"])
        | json_values
    },
    optional={"payload": payloads | json_values, "clientId": json_values},
)

# mostly valid track events with hostile details, so the accepted path is fuzzed too
near_valid = st.fixed_dictionaries(
    {
        "type": st.just("track"),
        "payload": st.fixed_dictionaries(
            {"name": st.text(min_size=1, max_size=60).filter(str.strip)},
            optional={
                "properties": properties,
                "profileId": st.text(max_size=20),
                "path": st.text(max_size=40),
            },
        ),
    }
)


def encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = (
    envelopes.map(encoded)
    | st.binary(max_size=200)
    | json_values.map(encoded)
    | st.lists(envelopes, max_size=5).map(encoded)
)


def header_sets(client_id: str) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {"content-type": st.sampled_from(["application/json", "text/plain", "", "x/y"])},
        optional={
            "origin": st.sampled_from(["https://fuzz.example", "https://evil.example", "null", ""]),
            "openpanel-client-id": st.sampled_from([client_id, str(uuid.uuid4()), "", "x" * 80]),
            "user-agent": st.sampled_from([CHROME_UA, "", "Googlebot/2.1", "\u00e9t\u00e9"]),
            "x-forwarded-for": st.sampled_from(["1.2.3.4", "garbage", ""]),
            "openpanel-sdk-name": st.text(
                st.characters(min_codepoint=32, max_codepoint=126), max_size=80
            ),
        },
    )


class Tally:
    def __init__(self) -> None:
        self.stored = 0


def fire(http: httpx.Client, path: str, body: bytes, headers: dict[str, str], tally: Tally) -> None:
    # non-ASCII values too; h11 refuses leading/trailing blanks, which no client sends
    raw_headers = {k: v.strip().encode("utf-8") for k, v in headers.items()}
    reply = http.post(path, content=body, headers=raw_headers)
    assert reply.status_code < 500, (reply.status_code, reply.text, body[:200])
    # always JSON (or empty): the SDK retries on anything else
    data = reply.json() if reply.content else None
    if reply.status_code >= 400:
        assert set(data) == {"error", "detail"}
        return
    if path == "/track":
        is_track = json.loads(body).get("type") == "track"
        if reply.status_code == 200 and is_track:
            tally.stored += 1
    else:
        for item, result in zip(json.loads(body), data["results"], strict=True):
            if result["status"] == 200 and item.get("type") == "track":
                tally.stored += 1


def test_random_input_never_5xx_and_stores_only_accepted(server: Any, store: Store) -> None:
    project: NewClient = create_project(server.services.engine, "fuzz", origins=["fuzz.example"])
    tally = Tally()
    with httpx.Client(base_url=server.url, timeout=30) as http:

        @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(["/track", "/track/batch"]),
            body=bodies,
            headers=header_sets(project.client_id),
        )
        def run(path: str, body: bytes, headers: dict[str, str]) -> None:
            fire(http, path, body, headers, tally)

        run()

        @settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(["/track", "/track/batch"]),
            body=(envelopes | near_valid).map(encoded)
            | st.lists(envelopes | near_valid, max_size=3).map(encoded),
        )
        def run_authenticated(path: str, body: bytes) -> None:
            headers = {
                "content-type": "application/json",
                "origin": "https://fuzz.example",
                "user-agent": CHROME_UA,
                "openpanel-client-id": project.client_id,
            }
            fire(http, path, body, headers, tally)

        run_authenticated()

    assert tally.stored > 0, "the fuzzer never produced a valid event; widen the strategies"

    def stored() -> int:
        return store.query_rows(
            "SELECT count() FROM gatrix.events WHERE project_id = {p:String}",
            {"p": project.project_id},
        )[0][0]

    wait_for(lambda: stored() >= tally.stored, timeout=20)
    dead = server.services.redis and asyncio.run_coroutine_threadsafe(
        server.services.buffer.dead_letters(), server.loop
    ).result(10)
    assert stored() == tally.stored, dead
