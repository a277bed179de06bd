"""The forwarder of an ingest process against a real HTTP server on a Unix socket (uvicorn, as
the primary runs): what reaches the primary is exactly what the client sent, and a client
that goes away or stops reading costs nothing lasting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gatrix.ingest import forward
from gatrix.ingest.forward import Forwarder


class Upstream:
    """The primary's stand-in: records each complete request, sets a cookie, answers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply_size = 64

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # an incomplete request is never handled
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append({"path": scope["path"], "headers": dict(scope["headers"]), "body": body})
        headers = [(b"set-cookie", b"session=secret; Path=/"), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        while sent < self.reply_size:
            chunk = b"x" * min(65536, self.reply_size - sent)
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[tuple[Upstream, str]]:
    app = Upstream()
    path = str(tmp_path / "primary.sock")
    server = uvicorn.Server(uvicorn.Config(app, uds=path, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield app, path
    server.should_exit = True
    await task


def _scope(path: str = "/page", method: str = "GET", headers: list | None = None) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"analytics.example"), *(headers or [])],
        "client": ("203.0.113.9", 40000),
    }


class Client:
    """The ASGI side of one client connection."""

    def __init__(self, body: list[bytes] | None = None, leave_mid_body: bool = False) -> None:
        self.body = list(body or [b""])
        self.leave = leave_mid_body
        self.messages: list[dict] = []
        self.done = asyncio.Event()

    async def receive(self) -> dict:
        if self.body:
            chunk = self.body.pop(0)
            return {
                "type": "http.request",
                "body": chunk,
                "more_body": bool(self.body) or self.leave,
            }
        if self.leave:
            return {"type": "http.disconnect"}
        await self.done.wait()  # connected until the test ends
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")


async def test_no_cookie_or_header_of_its_own_reaches_the_primary(upstream: Any) -> None:
    app, path = upstream
    fwd = Forwarder(path)
    try:
        first = Client()
        await fwd(_scope(), first.receive, first.send)
        assert first.status == 200
        start = first.messages[0]
        assert (b"set-cookie", b"session=secret; Path=/") in start["headers"]
        # the reply's date and server are the forwarding process's own server's to write
        assert not {k for k, _ in start["headers"]} & {b"date", b"server"}
        second = Client()
        await fwd(_scope(), second.receive, second.send)
        headers = app.seen[1]["headers"]
        assert b"cookie" not in headers  # the first reply's cookie is not replayed
        assert not {b"accept-encoding", b"user-agent", b"accept"} & set(headers)
        assert headers[b"x-gatrix-peer"] == b"203.0.113.9 40000"
        assert headers[b"host"] == b"analytics.example"
    finally:
        await fwd.close()


async def test_a_body_streams_through_and_one_cut_short_is_never_forwarded(upstream: Any) -> None:
    app, path = upstream
    fwd = Forwarder(path)
    try:
        parts = [b"email=a%40b.c", b"&password=x"]
        whole = Client(body=list(parts))
        chunked = [(b"transfer-encoding", b"chunked")]
        await fwd(_scope("/login", "POST", chunked), whole.receive, whole.send)
        assert whole.status == 200 and app.seen[-1]["body"] == b"".join(parts)

        cut = Client(body=[b"email=a%40b.c&pa"], leave_mid_body=True)
        status = await fwd(_scope("/login", "POST", chunked), cut.receive, cut.send)
        assert status == 499 and cut.messages == []
        await asyncio.sleep(0.2)
        assert len(app.seen) == 1  # the primary handled no truncated form

        big = [(b"content-length", str(forward.MAX_FORWARDED_BODY + 1).encode())]
        refused = Client(body=[b"x" * 10])
        await fwd(_scope("/login", "POST", big), refused.receive, refused.send)
        assert refused.status == 413 and len(app.seen) == 1
    finally:
        await fwd.close()


async def test_a_client_that_stops_reading_is_given_up(
    upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, path = upstream
    app.reply_size = 4 * 1024 * 1024
    monkeypatch.setattr(forward, "SEND_STALL_S", 0.3)
    fwd = Forwarder(path)
    stalled = asyncio.Event()

    class Stuck(Client):
        async def send(self, message: dict) -> None:
            self.messages.append(message)
            if message["type"] == "http.response.body":
                stalled.set()
                await asyncio.Event().wait()  # a reader that never reads again

    client = Stuck()
    try:
        await asyncio.wait_for(fwd(_scope(), client.receive, client.send), timeout=10)
        assert stalled.is_set()
        # the primary is free for others at once
        other = Client()
        app.reply_size = 64
        await asyncio.wait_for(fwd(_scope(), other.receive, other.send), timeout=5)
        assert other.status == 200
    finally:
        client.done.set()
        with contextlib.suppress(Exception):
            await fwd.close()
