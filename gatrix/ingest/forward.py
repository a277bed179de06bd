"""An ingest process hands every request that is not ingestion to the primary process.

All processes of a server accept connections on the same port (SO_REUSEPORT), so a dashboard
page or an insights query may land on an ingest process, which has no ClickHouse (embedded
chDB belongs to the primary). It forwards such requests over the primary's private Unix
socket and streams the reply back, and names the real peer in `x-gatrix-peer`; the primary
believes that header only on its private socket (see `peer_from_primary_socket`).

It is a transport, not an HTTP client: an httpx client would keep a cookie jar (one visitor's
session cookie handed to the next), add headers of its own and follow nothing we want
followed. Bodies stream both ways and nothing is held in memory; a request whose client went
away mid-body is abandoned, not forwarded cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

log = logging.getLogger("gatrix.forward")
PEER_HEADER = b"x-gatrix-peer"
# The forwarded paths take forms and small JSON documents; the framework's own limit is 10 MB.
MAX_FORWARDED_BODY = 10 * 1024 * 1024
# a client that reads nothing of its reply for this long gives its connection up
SEND_STALL_S = 30.0
TIMEOUTS = {"connect": 5.0, "read": None, "write": 30.0, "pool": 10.0}
# Hop-by-hop headers belong to one connection (RFC 9110 §7.6.1); the rest pass unchanged.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        PEER_HEADER,
    }
)
# the ingest process's own server writes these for the reply it sends
_REPLY_DROPPED = _HOP_BY_HOP | {b"date", b"server"}
_PRIMARY = httpx.URL("http://primary")  # the host is a name only: the transport is the socket


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class BodyTooLarge(Exception):
    pass


class Forwarder:
    def __init__(self, primary_socket: str) -> None:
        # no cap on connections to the primary: a slow reader must not hold a slot others need
        self.transport = httpx.AsyncHTTPTransport(
            uds=primary_socket,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    async def close(self) -> None:
        await self.transport.aclose()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> int:
        headers, framed = _request_headers(scope)
        if framed == "too_large":
            return await _reply(send, 413, "body_too_large", "the request body is over 10 MB")
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        try:
            url = _PRIMARY.copy_with(raw_path=target + (b"?" + query if query else b""))
        except (httpx.InvalidURL, ValueError, TypeError):
            return await _reply(send, 400, "invalid_path", "the URL cannot be forwarded")
        stream = _Body(receive) if framed else None
        request = httpx.Request(
            scope["method"],
            url,
            headers=headers,
            stream=stream or httpx.ByteStream(b""),
            extensions={"timeout": TIMEOUTS},
        )
        try:
            reply = await self.transport.handle_async_request(request)
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol):
            return await _reply(send, 400, "bad_request", "the request cannot be forwarded")
        except httpx.TransportError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientGone | BodyTooLarge):
                return await _abandoned(cause, send)
            log.warning("the primary process did not answer: %s", exc)
            return await _reply(
                send, 503, "primary_unavailable", "the server is restarting; try again shortly"
            )
        except (ClientGone, BodyTooLarge) as exc:
            return await _abandoned(exc, send)
        return await _relay(reply, receive, send)


async def _abandoned(why: Exception, send: Any) -> int:
    if isinstance(why, BodyTooLarge):
        return await _reply(send, 413, "body_too_large", "the request body is over 10 MB")
    return 499  # the client left mid-body: nothing was forwarded, nobody to answer


def _request_headers(scope: dict) -> tuple[list[tuple[bytes, bytes]], str]:
    """The headers to send upstream, and how the body is framed: "" (none), "length",
    "chunked", or "too_large" (refused before reading a byte)."""
    headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
    client = scope.get("client")
    if client:
        headers.append((PEER_HEADER, f"{client[0]} {client[1]}".encode("latin-1")))
    raw = dict(scope["headers"])
    if b"content-length" in raw:
        size = raw[b"content-length"]
        if size.isdigit() and int(size) > MAX_FORWARDED_BODY:
            return headers, "too_large"
        return headers, "length" if size != b"0" else ""
    if b"chunked" in raw.get(b"transfer-encoding", b"").lower():
        headers.append((b"transfer-encoding", b"chunked"))
        return headers, "chunked"
    return headers, ""


class _Body(httpx.AsyncByteStream):
    """The client's body as it arrives, chunk by chunk, never more than the limit."""

    def __init__(self, receive: Any) -> None:
        self.receive = receive
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORWARDED_BODY:
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.done = True
                return


async def _relay(reply: httpx.Response, receive: Any, send: Any) -> int:
    """Stream the primary's reply to the client; stop (and drop the upstream connection)
    when the client disconnects or stops reading for SEND_STALL_S."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(k, v) for k, v in reply.headers.raw if k.lower() not in _REPLY_DROPPED]
        start = {"type": "http.response.start", "status": reply.status_code, "headers": headers}
        await asyncio.wait_for(send(start), SEND_STALL_S)
        assert isinstance(reply.stream, httpx.AsyncByteStream)  # what the transport returns
        async for chunk in reply.stream:
            if gone.is_set():
                break
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            await asyncio.wait_for(send(message), SEND_STALL_S)
        else:
            await send({"type": "http.response.body", "body": b""})
    except TimeoutError:
        log.info("a client stopped reading its reply; its connection is given up")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await reply.aclose()
    return reply.status_code


async def _reply(send: Any, status: int, code: str, detail: str) -> int:
    payload = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
    return status


def peer_from_primary_socket(scope: dict, private_socket: str) -> dict:
    """The scope as the forwarding process saw it: its peer address, when the request came
    over the primary's private socket. Anywhere else the header is a client's claim: ignored."""
    server = scope.get("server")
    if not private_socket or not server or server[0] != private_socket:
        return scope
    peer = next((v for k, v in scope["headers"] if k == PEER_HEADER), None)
    headers = [(k, v) for k, v in scope["headers"] if k != PEER_HEADER]
    client = None
    if peer:
        host, _, port = peer.decode("latin-1").rpartition(" ")
        client = (host, int(port)) if port.isdigit() else (host, 0)
    return {**scope, "headers": headers, "client": client}
