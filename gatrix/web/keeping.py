"""The settings page's data-keeping forms: retention in days and traffic exclusions. The page
itself is admin.py's; a form with an error comes back on it (400) with what was typed."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, post

from gatrix.ingest.exclusions import KINDS
from gatrix.meta import keeping
from gatrix.meta.accounts import AccountError
from gatrix.services import Services
from gatrix.web.admin import _admin_page, _settings_path
from gatrix.web.kit import done, form_of, require_role


@post("/projects/{project_id:str}/retention", include_in_schema=False)
async def retention_submit(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    typed = str(form.get("retention_days", ""))[:20]
    try:
        days = keeping.parse_days(typed)
        await asyncio.to_thread(keeping.set_retention, services.engine, project_id, days)
    except AccountError as exc:
        current = await asyncio.to_thread(keeping.keeping, services.engine, project_id)
        return await _admin_page(
            request,
            services,
            user,
            project_id,
            status=400,
            error=str(exc),
            keeping={**(current or {}), "retention_days": typed},
        )
    notice = f"Keeping {days} days of events." if days else "Keeping events forever."
    return await done(request, services, user, _settings_path(project_id), notice=notice)


@post("/projects/{project_id:str}/exclusions", include_in_schema=False)
async def exclusions_submit(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    # bounded before parsing: the parser's own limits then speak in rules, not bytes
    typed = {kind: str(form.get(f"exclude_{kind}", ""))[:50_000] for kind in KINDS}
    try:
        await asyncio.to_thread(keeping.set_exclusions, services.engine, project_id, typed)
    except AccountError as exc:
        current = await asyncio.to_thread(keeping.keeping, services.engine, project_id)
        return await _admin_page(
            request,
            services,
            user,
            project_id,
            status=400,
            error=str(exc),
            keeping={**(current or {}), "exclusions": typed},
        )
    services.directory.forget()  # the new rules apply to this process at once
    return await done(request, services, user, _settings_path(project_id), notice="Saved.")


KEEPING_ROUTES = [retention_submit, exclusions_submit]
