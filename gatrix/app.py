"""The ASGI application: Litestar for everything, with the ingest paths in front of it.

`create_app(settings)` builds the Litestar app; `create_asgi(settings)` wraps it in
`FrontDoor`, which hands `/track` straight to the lean ingest handler and everything else to
Litestar. Both use the `Services` one `Runtime` starts and stops in Litestar's lifespan;
handlers receive them by dependency injection (`services: Services`).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader
from litestar import Litestar, Request, get
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, InternalServerException, NotAuthorizedException
from litestar.openapi import OpenAPIConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.response import Redirect, Response, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from redis.exceptions import RedisError

from gatrix import __version__
from gatrix.ingest.forward import peer_from_primary_socket
from gatrix.ingest.pool import PoolPlan
from gatrix.ingest.routes import INGEST_PATHS
from gatrix.ingest.siblings import read_reports
from gatrix.ingest.wire import WIRE_PATHS
from gatrix.insights.api import InsightsController, api_error_handler, internal_error_response
from gatrix.insights.people_api import PeopleController
from gatrix.insights.product_api import ProductController
from gatrix.insights.saved_api import SavedController
from gatrix.logs import configure as configure_logs
from gatrix.logs import log_unexpected, request_id
from gatrix.metrics import render as render_metrics
from gatrix.portability.routes import PORTABILITY_ROUTES
from gatrix.resources import assets_dir, templates_dir
from gatrix.services import Runtime, Services, health_report
from gatrix.settings import Settings
from gatrix.web import humane
from gatrix.web.admin import ADMIN_ROUTES
from gatrix.web.auth import metrics_authorized
from gatrix.web.dashboard import DASHBOARD_ROUTES
from gatrix.web.definitions import DEFINITION_ROUTES
from gatrix.web.downloads import DOWNLOAD_ROUTES
from gatrix.web.headers import security_headers
from gatrix.web.keeping import KEEPING_ROUTES
from gatrix.web.kit import PageError, login_url
from gatrix.web.people import PEOPLE_ROUTES
from gatrix.web.report_pages import REPORT_ROUTES
from gatrix.web.share import SHARE_ROUTES
from gatrix.web.tracker import tracker_script
from gatrix.web.vendor import HTMX_PATH, PLOTLY_PATH, VENDOR_ROUTES


@get("/metrics", include_in_schema=False, media_type="text/plain; version=0.0.4")
async def metrics_endpoint(request: Request, services: Services) -> str:
    if not metrics_authorized(request.headers.get("authorization", ""), services.settings):
        raise NotAuthorizedException(detail="send Authorization: Bearer <GATRIX_METRICS_TOKEN>")
    await services.supervisor.observe()  # fresh buffer figures (Redis down: NaN)
    plan = services.plan
    reports = []
    if plan is not None:
        reports = await read_reports(services.redis, services.keys, plan.server, plan.count)
    return render_metrics(services, reports)


@get("/health", summary="Health of every part")
async def health(services: Services) -> Response[dict[str, Any]]:
    ok, report = await health_report(services)
    return Response(report, status_code=200 if ok else 503)


@get("/favicon.ico", include_in_schema=False, cache=86400)
async def favicon(request: Request) -> Redirect:
    return Redirect(request.app.state.settings.root_path + "/assets/favicon.svg")


def page_error_handler(request: Request, exc: PageError) -> Response:
    """Browser errors as pages; a missing login sends the browser to the login form."""
    if exc.status_code == 401 and request.method == "GET":
        htmx = request.headers.get("hx-request") == "true"
        if htmx:
            # a fragment asked after the session ended: a redirect would be followed and the
            # login page swapped into the dashboard; htmx moves the whole window instead
            current = urlsplit(request.headers.get("hx-current-url", ""))
            root = request.app.state.settings.root_path
            back = current.path.removeprefix(root) + (f"?{current.query}" if current.query else "")
            return Response(b"", status_code=401, headers={"HX-Redirect": login_url(request, back)})
        back = request.scope.get("path", "") + (
            f"?{request.scope['query_string'].decode('latin-1')}"
            if request.scope.get("query_string")
            else ""
        )
        return Redirect(login_url(request, back))
    return _error_page(exc.status_code, exc.detail, exc.headers)


def _error_page(status: int, detail: str, headers: dict[str, str] | None = None) -> Template:
    return Template(
        template_name="error.html.j2",
        status_code=status,
        context={"status": status, "detail": detail, "csrf": ""},
        headers=headers,
    )


def _is_page(request: Request) -> bool:
    path = request.scope.get("path", "")
    return path == "/" or path.startswith(PAGE_PREFIXES)


# what the file system says about a name that cannot exist under assets/: a 404, not a fault
_NO_SUCH_NAME = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL})


def asset_error_handler(request: Request, exc: Exception) -> Response:
    # the framework's file adapter wraps OSError in a 500; look at what it wrapped
    cause = exc.__cause__ if isinstance(exc, InternalServerException) else exc
    if isinstance(cause, ValueError) or (
        isinstance(cause, OSError) and cause.errno in _NO_SUCH_NAME
    ):
        return Response({"error": "not_found", "detail": "no such asset"}, status_code=404)
    return internal_error_response(request, exc)


# browser pages get the HTML error page; everything else (API, assets, schema) gets JSON
PAGE_PREFIXES = ("/dashboard", "/share", "/projects", "/users", "/login", "/logout", "/setup")


def redis_error_handler(request: Request, exc: RedisError) -> Response:
    """Redis (sessions, throttles, the buffer's figures) is down or full: a 503 to retry, not
    a 500; the log says which."""
    logging.getLogger("gatrix.http").warning("Redis error on %s: %s", request.scope["path"], exc)
    detail = "A part of the server (Redis) is unavailable right now; retry in a few seconds."
    headers = {"retry-after": "5"}
    if _is_page(request):
        return _error_page(503, detail, headers)
    return Response(
        {"error": "temporarily_unavailable", "detail": detail}, status_code=503, headers=headers
    )


def internal_error_handler(request: Request, exc: Exception) -> Response:
    if not _is_page(request):
        return internal_error_response(request, exc)
    rid = log_unexpected(exc, f"{request.method} {request.scope.get('path', '')}")
    return _error_page(500, f"Something went wrong on our side (request id {rid}).")


def template_environment(settings: Settings) -> Environment:
    env = Environment(loader=FileSystemLoader(templates_dir()), autoescape=True)
    env.globals["root"] = settings.root_path  # every link, form and asset URL starts with it
    env.globals["htmx_js"] = HTMX_PATH
    env.globals["plotly_js"] = PLOTLY_PATH
    env.globals["humane"] = humane  # wording for people: durations, countries, "Direct / None"
    env.filters.update(humane.FILTERS)  # duration, country, dimension_value, number, percent
    return env


def _services(state: State) -> Services:
    return state.services  # set by the lifespan before the first request


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return Litestar(
        route_handlers=[
            health,
            metrics_endpoint,
            favicon,
            tracker_script,
            InsightsController,
            PeopleController,
            *PORTABILITY_ROUTES,
            ProductController,
            SavedController,
            *VENDOR_ROUTES,
            *DASHBOARD_ROUTES,
            *DOWNLOAD_ROUTES,
            *PEOPLE_ROUTES,
            *REPORT_ROUTES,
            *ADMIN_ROUTES,
            *KEEPING_ROUTES,
            *DEFINITION_ROUTES,
            *SHARE_ROUTES,
            create_static_files_router(
                path="/assets",
                directories=[assets_dir()],
                include_in_schema=False,
                exception_handlers={
                    InternalServerException: asset_error_handler,
                    ValueError: asset_error_handler,
                },
            ),
        ],
        exception_handlers={
            PageError: page_error_handler,
            HTTPException: api_error_handler,
            RedisError: redis_error_handler,
            Exception: internal_error_handler,
        },
        template_config=TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(template_environment(settings))
        ),
        lifespan=[lifespan],
        plugins=[HTMXPlugin()],  # request.htmx: which requests htmx sent, and why
        before_send=[security_headers(settings)],
        logging_config=None,  # gatrix.logs owns the format (text or JSON, with request ids)
        state=State({"runtime": runtime, "settings": settings}),
        dependencies={"services": Provide(_services, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(title="Gatrix Analytics", version=__version__, path="/schema"),
        debug=False,
    )


class FrontDoor:
    """In front of Litestar: strips GATRIX_ROOT_PATH, gives every request an id (X-Request-Id),
    times it for /metrics, and hands the ingest paths straight to the lean ingest handler."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.runtime: Runtime = app.state.runtime
        self.log = logging.getLogger("gatrix.http")
        self.root = app.state.settings.root_path
        plan = self.runtime.plan
        # requests forwarded by this server's ingest processes arrive on this socket
        self.private_socket = plan.primary_socket if plan is not None and plan.count else ""
        self.track_latency = self.runtime.request_metrics.histogram("track", 200)
        self.ingest: Any = None  # the ingest handler, once the lifespan has started it
        # replies FrontDoor writes itself (NUL in the URL, a bad Host, a crash) get the same
        # security headers as Litestar's
        self.secure = security_headers(app.state.settings)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        if self.private_socket:
            scope = peer_from_primary_socket(scope, self.private_socket)
        path = scope["path"]
        root = self.root
        if root and (path == root or path.startswith(root + "/")):
            # the proxy kept the prefix: route as if it had not
            path = path[len(root) :] or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        started = time.perf_counter()
        ingest = self.ingest
        if ingest is None and "services" in self.app.state:
            ingest = self.ingest = self.app.state.services.ingest
        if path in WIRE_PATHS and ingest is not None:
            # other tools' senders: as lean as /track, each format timed under its own name
            status = await self.app.state.services.wire(scope, receive, send)
            self.runtime.request_metrics.observe(
                WIRE_PATHS[path], status, time.perf_counter() - started
            )
            return
        if path in INGEST_PATHS and ingest is not None:
            # the hot path: no request id, no wrapper around send (measured: they cost a
            # quarter of /track's throughput); only its latency is recorded
            status = await ingest(scope, receive, send)
            elapsed = time.perf_counter() - started
            if status == 200:
                self.track_latency.observe(elapsed)
            else:
                self.runtime.request_metrics.observe("track", status, elapsed)
            return
        await self._framework(scope, receive, send, path, started)

    async def _framework(
        self, scope: dict, receive: Any, send: Any, path: str, started: float
    ) -> None:
        incoming = dict(scope["headers"]).get(b"x-request-id", b"")[:64]
        rid = incoming.decode("latin-1") if incoming else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        status = 500
        started_reply = False

        async def send_with_id(message: dict) -> None:
            nonlocal status, started_reply
            if message["type"] == "http.response.start":
                status, started_reply = message["status"], True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode("latin-1")),
                ]
                await self.secure(message, scope)
            await send(message)

        try:
            if not _valid_host(scope):
                await _send_json(
                    send_with_id,
                    400,
                    {"error": "invalid_host", "detail": "the Host header is not host[:port]"},
                )
            elif "\x00" in path or b"%00" in scope.get("query_string", b""):
                # no route, file, parameter or database key contains NUL; PostgreSQL refuses
                # it in text, so it must never reach a query
                await _send_json(
                    send_with_id,
                    400,
                    {"error": "invalid_path", "detail": "the URL contains a NUL character"},
                )
            else:
                await self.app(scope, receive, send_with_id)  # type: ignore[arg-type]
        except Exception as exc:
            # escaped the framework's handlers (e.g. while rendering the error page itself)
            log_unexpected(exc, f"{scope['method']} {path}")
            if started_reply:
                raise
            await _send_json(
                send_with_id,
                500,
                {
                    "error": "internal_error",
                    "detail": f"report request id {rid}",
                    "request_id": rid,
                },
            )
        finally:
            elapsed = time.perf_counter() - started
            self.runtime.request_metrics.observe(_route_group(path), status, elapsed)
            self.log.info(
                "%s %s %s %.1fms",
                scope["method"],
                path,
                status,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            request_id.reset(token)


_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*)(:(\d{1,5}))?")


def _valid_host(scope: dict) -> bool:
    """A Host header that URL building can parse: a name or address and a port below 65536
    (anything else made building `request.url` raise, i.e. a 500 a client could cause)."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    match = _HOST.fullmatch(host)
    return match is not None and (match.group(3) is None or int(match.group(3)) <= 65535)


async def _send_json(send: Any, status: int, body: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _route_group(path: str) -> str:
    if path.startswith("/track"):
        return "track"
    if path.startswith("/insights/"):
        return "insights"
    if path.startswith(("/assets/", "/op1.js", "/tracker.js")):
        return "static"
    return "pages"


def create_asgi(
    settings: Settings, owns_process: bool = False, plan: PoolPlan | None = None
) -> FrontDoor:
    configure_logs(settings.log_level, settings.log_format)
    runtime = Runtime(settings, owns_process=owns_process, plan=plan)
    return FrontDoor(create_app(settings, runtime))
