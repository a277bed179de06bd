"""Property-based: random and near-valid bodies at the drop-in wire formats (`/v1/*` as
Segment's libraries send it, `/api/send` as Umami's tracker, `/api/event` as Plausible's).

Invariant: never a 5xx, and an error is always the JSON `{error, detail}`. The bodies mix
valid messages with hostile values where each format reads a number, a time, an object or
text: integers beyond any float, times far in the future or the past, deep nesting."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatrix.meta.projects import create_project

from ..conftest import CHROME_UA, LiveServer
from .test_fuzz import json_values

# values that have broken readers before: unbounded JSON integers, odd times and digits
hostile = (
    json_values
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from(
        [
            "²",
            "2026-11-01Z",
            "9999-12-31T23:59:59Z",
            "1" + "0" * 19,
            10**19,
            -1,
            1e308,
            "",
            "\x00",
            {"a": {"b": {"c": [1]}}},
        ]
    )
)


def _maybe(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: v | hostile for k, v in keys.items()})


segment_context = _maybe(
    {
        "ip": st.just("8.8.8.8"),
        "userAgent": st.just(CHROME_UA),
        "locale": st.just("de-DE"),
        "page": _maybe({"url": st.just("https://shop.example/x"), "referrer": st.text()}),
        "screen": _maybe({"width": st.integers(0, 5000), "height": st.integers(0, 5000)}),
        "campaign": _maybe({"name": st.text(max_size=8), "source": st.text(max_size=8)}),
    }
)
segment_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "screen", "identify", "alias", "group"])},
    optional={
        "event": st.text(min_size=1, max_size=20) | hostile,
        "name": st.text(max_size=20) | hostile,
        "anonymousId": st.text(min_size=1, max_size=20) | hostile,
        "userId": st.text(min_size=1, max_size=20) | hostile,
        "previousId": st.text(max_size=20) | hostile,
        "messageId": st.uuids().map(str) | hostile,
        "timestamp": st.just("2026-11-29T10:00:00Z") | hostile,
        "sentAt": hostile,
        "properties": _maybe({"revenue": st.floats(0, 100), "url": st.text(max_size=20)}),
        "traits": _maybe({"email": st.text(max_size=20), "firstName": st.text(max_size=10)}),
        "context": segment_context | hostile,
    },
)
umami_payloads = _maybe(
    {
        "hostname": st.just("shop.example.com"),
        "url": st.just("/pricing?utm_source=x"),
        "referrer": st.text(max_size=30),
        "title": st.text(max_size=30),
        "screen": st.just("1920x1080"),
        "language": st.just("en-US"),
        "name": st.text(max_size=20),
        "data": st.dictionaries(st.text(max_size=8), hostile, max_size=4),
        "id": st.text(max_size=20),
    }
)
plausible_bodies = st.fixed_dictionaries(
    {
        "n": st.sampled_from(["pageview", "engagement", "Signup"]),
        "u": st.just("https://shop.example.com/a"),
        "d": st.just("shop.example.com"),
    },
    optional={
        "r": st.text(max_size=30) | hostile,
        "p": st.dictionaries(st.text(max_size=8), hostile, max_size=4) | hostile,
        "$": _maybe({"amount": st.floats(0, 100), "currency": st.just("EUR")}) | hostile,
        "i": st.booleans() | hostile,
        "sd": st.integers(0, 100) | hostile,
        "e": st.integers(0, 10**6) | hostile,
    },
) | st.fixed_dictionaries({"n": hostile, "u": hostile, "d": hostile})


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _check(reply: httpx.Response, body: bytes, accepted: list[int]) -> None:
    assert reply.status_code < 500, (reply.status_code, reply.text, body[:300])
    if reply.status_code >= 400 and reply.content:
        assert set(reply.json()) == {"error", "detail"}, reply.text
    elif reply.status_code < 300:
        accepted.append(reply.status_code)


def test_the_wire_formats_never_answer_5xx(server: LiveServer) -> None:
    project = create_project(
        server.services.engine, f"wire fuzz {uuid.uuid4().hex[:6]}", ["https://shop.example.com"]
    )
    server.services.directory.forget()  # the domain index is cached for a few seconds
    secret = f"{project.client_id}:{project.client_secret}".encode()
    segment_auth = {"authorization": "Basic " + base64.b64encode(secret).decode()}
    browser = {"origin": "https://shop.example.com", "user-agent": CHROME_UA}
    accepted: dict[str, list[int]] = {"segment": [], "umami": [], "plausible": []}
    with httpx.Client(base_url=server.url, timeout=30) as http:

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(["/v1/track", "/v1/page", "/v1/identify", "/v1/batch"]),
            message=segment_messages,
        )
        # valid messages in every run: few random ones are (4 of 300 in one run), and the
        # accepted path must be fuzzed however the draw falls
        @example(path="/v1/track", message={"type": "track", "event": "Signup", "userId": "u"})
        @example(path="/v1/page", message={"type": "page", "name": "Home", "anonymousId": "a"})
        @example(path="/v1/identify", message={"type": "identify", "userId": "u2"})
        @example(path="/v1/batch", message={"type": "screen", "name": "S", "userId": "u3"})
        @example(path="/v1/batch", message={"type": "track", "event": "E", "anonymousId": "b"})
        def segment(path: str, message: dict[str, Any]) -> None:
            body = _encode({"batch": [message]} if path == "/v1/batch" else message)
            reply = http.post(path, content=body, headers=segment_auth)
            _check(reply, body, accepted["segment"])

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(kind=st.sampled_from(["event", "identify"]) | hostile, payload=umami_payloads)
        @example(kind="event", payload={"hostname": "shop.example.com", "url": "/"})
        @example(kind="event", payload={"hostname": "shop.example.com", "url": "/a", "name": "x"})
        @example(kind="event", payload={"url": "/pricing?utm_source=x", "title": "Pricing"})
        @example(kind="event", payload={"hostname": "shop.example.com", "referrer": "x.test"})
        @example(kind="identify", payload={"hostname": "shop.example.com", "id": "u"})
        def umami(kind: Any, payload: dict[str, Any]) -> None:
            body = _encode({"type": kind, "payload": {"website": project.client_id, **payload}})
            _check(http.post("/api/send", content=body, headers=browser), body, accepted["umami"])

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(event=plausible_bodies)
        def plausible(event: dict[str, Any]) -> None:
            body = _encode(event)
            headers = {**browser, "content-type": "text/plain"}
            reply = http.post("/api/event", content=body, headers=headers)
            _check(reply, body, accepted["plausible"])

        segment()
        umami()
        plausible()
    # the accepted path was fuzzed too, not only the refusals
    assert all(len(codes) >= 5 for codes in accepted.values()), {
        k: len(v) for k, v in accepted.items()
    }
