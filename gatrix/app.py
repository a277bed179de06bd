"""The ASGI application: Litestar for everything, with the ingest paths in front of it.

`create_app(settings)` builds the Litestar app; `create_asgi(settings)` wraps it in
`FrontDoor`, which hands `/track` straight to the lean ingest handler and everything else to
Litestar. Both share one `Runtime`, started and stopped by Litestar's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.response import Response

from gatrix import __version__
from gatrix.insights.api import InsightsController, api_error_handler
from gatrix.runtime import Runtime
from gatrix.settings import Settings

INGEST_PATHS = frozenset({"/track", "/track/", "/track/batch", "/track/batch/"})


@get("/health", summary="Health of every part")
async def health(request: Request, state: State) -> Response[dict[str, Any]]:
    ok, report = await state.runtime.health()
    return Response(report, status_code=200 if ok else 503)


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return Litestar(
        route_handlers=[health, InsightsController],
        exception_handlers={HTTPException: api_error_handler},
        lifespan=[lifespan],
        state=State({"runtime": runtime, "settings": settings}),
        openapi_config=OpenAPIConfig(title="Gatrix Analytics", version=__version__, path="/schema"),
        debug=False,
    )


class FrontDoor:
    """Routes the ingest paths around the framework; everything else goes to Litestar."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.runtime: Runtime = app.state.runtime

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in INGEST_PATHS:
            ingest = self.runtime.ingest
            if ingest is not None:
                await ingest(scope, receive, send)
                return
        await self.app(scope, receive, send)  # type: ignore[arg-type]


def create_asgi(settings: Settings) -> FrontDoor:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # SAQ logs every job at INFO; a flush a second would drown everything else.
    logging.getLogger("saq").setLevel(logging.WARNING)
    return FrontDoor(create_app(settings))
