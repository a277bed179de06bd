"""An ingest process hands every request that is not ingestion to the primary process.

All processes of a server accept connections on the same port (SO_REUSEPORT), so a dashboard
page or an insights query may land on an ingest process, which has no ClickHouse (embedded
chDB belongs to the primary). It forwards such requests over the primary's private Unix
socket, streaming the reply back, and names the real peer in `x-gatrix-peer`; the primary
believes that header only on its private socket (see `peer_from_primary_socket`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

log = logging.getLogger("gatrix.forward")
PEER_HEADER = b"x-gatrix-peer"
# Request bodies of the forwarded paths are forms and small JSON documents; the framework's
# own limit is 10 MB, so a larger body would be refused by the primary anyway.
MAX_FORWARDED_BODY = 10 * 1024 * 1024
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


_PRIMARY = httpx.URL("http://primary")  # the host is a name only: the transport is the socket


class Forwarder:
    def __init__(self, primary_socket: str) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=primary_socket, retries=1),
            # exports stream for minutes and heavy reports have their own budget: no read limit
            timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> int:
        body = await _read_body(receive)
        if body is None:
            return await _reply(send, 413, "body_too_large", "the request body is over 10 MB")
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        client = scope.get("client")
        if client:
            headers.append((PEER_HEADER, f"{client[0]} {client[1]}".encode("latin-1")))
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        try:
            request = self.client.build_request(
                scope["method"],
                _PRIMARY.copy_with(raw_path=target + (b"?" + query if query else b"")),
                headers=headers,
                content=body,
            )
        except (httpx.InvalidURL, ValueError, TypeError):
            return await _reply(send, 400, "invalid_path", "the URL cannot be forwarded")
        try:
            reply = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("the primary process did not answer: %s", exc)
            return await _reply(
                send, 503, "primary_unavailable", "the server is restarting; try again shortly"
            )
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status_code,
                    "headers": [
                        (k, v) for k, v in reply.headers.raw if k.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            async for chunk in reply.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await reply.aclose()
        return reply.status_code


async def _read_body(receive: Any) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORWARDED_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


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
