"""`GET /insights/{projectId}/export`: a project's raw events, profiles, links or counters.

Same access, range and filter rules as the other insights endpoints (it reuses their
authorisation and query parsing); the body is streamed page by page (see export.py).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from gatrix.insights.api import (
    ERROR_RESPONSES,
    ApiError,
    FilterParam,
    RangeParam,
    _now,
    _params,
    _run,
    authorize,
)
from gatrix.insights.query import build_query
from gatrix.portability.export import CONTENT_TYPES, InvalidExport, check, export, filename
from gatrix.services import Services

FormatParam = Annotated[str, Parameter(query="format", description="csv, ndjson or parquet")]


@get(
    "/insights/{project_id:str}/export",
    summary="Raw events (or profiles, identity links, counters) as CSV, NDJSON or Parquet",
    tags=["insights"],
    responses=ERROR_RESPONSES,
)
async def export_file(
    request: Request,
    services: Services,
    project_id: str,
    fmt: FormatParam = "ndjson",
    kind: str = "events",
    range_: RangeParam = "30d",
    start: str | None = None,
    end: str | None = None,
    filters: FilterParam = None,
) -> Stream:
    reader = await authorize(request, services, project_id)
    try:
        check(fmt, kind)
    except InvalidExport as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    params = _params(range_, start, end, None, None, filters)
    query = await _run(build_query, project_id, reader.timezone, params, _now())
    return Stream(
        export(services.store, query, fmt, kind),
        media_type=CONTENT_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{filename(project_id, kind, fmt)}"',
            "Cache-Control": "no-store",
        },
    )


PORTABILITY_ROUTES = [export_file]
