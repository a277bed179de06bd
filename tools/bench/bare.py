"""The ceiling: an ASGI app that does nothing but read the body and answer.

Served by the same uvicorn settings as `gatrix serve`, its rate is the most this machine, this
server software and this load generator allow, so gatrix's rate can be read as a share of it.
"""

from __future__ import annotations

from typing import Any

_BARE_BODY = b'{"deviceId":"x","sessionId":"y"}'
_BARE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BARE_BODY)).encode()),
]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ingest endpoint can do: read the whole body, answer a fixed JSON reply."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = bool(message.get("more_body", False))
    await send({"type": "http.response.start", "status": 200, "headers": _BARE_HEADERS})
    await send({"type": "http.response.body", "body": _BARE_BODY})
