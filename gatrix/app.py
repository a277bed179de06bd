"""The ASGI application: Litestar for everything, with the ingest paths in front of it.

`create_app(settings)` builds the Litestar app; `create_asgi(settings)` wraps it in
`FrontDoor`, which hands `/track` straight to the lean ingest handler and everything else to
Litestar. Both share one `Runtime`, started and stopped by Litestar's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from litestar import Litestar, Request, get
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.response import Redirect, Response, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from gatrix import __version__
from gatrix.insights.api import InsightsController, api_error_handler
from gatrix.runtime import Runtime
from gatrix.settings import Settings
from gatrix.web.admin import ADMIN_ROUTES, PageError
from gatrix.web.share import SHARE_ROUTES
from gatrix.web.tracker import tracker_script

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
ASSETS_DIR = ROOT / "assets"
INGEST_PATHS = frozenset({"/track", "/track/", "/track/batch", "/track/batch/"})


@get("/health", summary="Health of every part")
async def health(request: Request, state: State) -> Response[dict[str, Any]]:
    ok, report = await state.runtime.health()
    return Response(report, status_code=200 if ok else 503)


@get("/favicon.ico", include_in_schema=False, cache=86400)
async def favicon() -> Redirect:
    return Redirect("/assets/favicon.svg")


def page_error_handler(request: Request, exc: PageError) -> Response:
    """Browser errors as pages; a missing login sends the browser to the login form."""
    if exc.status_code == 401 and request.method == "GET":
        return Redirect("/login")
    return Template(
        template_name="error.html.j2",
        status_code=exc.status_code,
        context={"status": exc.status_code, "detail": exc.detail, "csrf": ""},
    )


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
        route_handlers=[
            health,
            favicon,
            tracker_script,
            InsightsController,
            *ADMIN_ROUTES,
            *SHARE_ROUTES,
            create_static_files_router(
                path="/assets", directories=[ASSETS_DIR], include_in_schema=False
            ),
        ],
        exception_handlers={PageError: page_error_handler, HTTPException: api_error_handler},
        template_config=TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(
                Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
            )
        ),
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
