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


def serve(port: int, processes: int) -> None:
    """`processes` copies of the bare app on one port, spread by SO_REUSEPORT exactly as the
    processes of `gatrix serve --workers N` are, so the two are compared on equal terms."""
    import signal
    import subprocess
    import sys

    import uvicorn

    from gatrix.ingest.listen import listening_socket, server_config

    if processes > 1:
        argv = [sys.executable, "-m", "tools.bench.bare", "--port", str(port), "--processes", "1"]
        copies = [subprocess.Popen(argv) for _ in range(processes)]

        def stop(signum: int, _frame: Any) -> None:
            for copy in copies:
                copy.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for copy in copies:
            copy.wait()
        return
    config = server_config(bare_app)
    uvicorn.Server(config).run(sockets=[listening_socket("127.0.0.1", port)])


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    serve(args.port, args.processes)
