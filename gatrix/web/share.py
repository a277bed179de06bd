"""Public read-only share links: `/share/{token}` shows one project's numbers, nothing else.

A password-protected link asks once; the unlocked state is a random cookie mapped to the
link's token in Redis, so a revoked link stops working at once. Password guesses are
throttled per link and per client IP, like logins.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from gatrix.buffer.keys import SHARE_UNLOCK_TTL_S
from gatrix.insights.admission import caller
from gatrix.meta import accounts
from gatrix.services import Services
from gatrix.web import auth
from gatrix.web.dashboard import render_dashboard, render_fragment, render_realtime
from gatrix.web.downloads import render_download
from gatrix.web.kit import PageError, form_of, go, page

UNLOCK_COOKIE = "gatrix_share"


async def _link(services: Services, token: str) -> dict[str, Any]:
    link = await asyncio.to_thread(accounts.share_link, services.engine, token)
    if link is None:
        raise PageError(status_code=404, detail="This share link does not exist or was revoked.")
    return link


async def _unlocked(request: Request, services: Services, link: dict[str, Any]) -> bool:
    if not link["password_hash"]:
        return True
    key = request.cookies.get(UNLOCK_COOKIE, "")
    if not key or len(key) > 100:
        return False
    value = await services.redis.get(services.keys.share_unlock(key))
    return value is not None and value.decode() == link["token"]


async def _shared_project(
    request: Request, services: Services, token: str
) -> dict[str, Any] | None:
    """The project behind an unlocked link; None when the link still needs its password."""
    link = await _link(services, token)
    if not await _unlocked(request, services, link):
        return None
    project = await asyncio.to_thread(accounts.project_summary, services.engine, link["project_id"])
    if project is None:
        raise PageError(status_code=404, detail="This share link does not exist or was revoked.")
    caller.set(f"share:{link['token']}")  # everyone on a public link queues as one caller
    return project


@get("/share/{token:str}", include_in_schema=False)
async def share_page(request: Request, services: Services, token: str) -> Template:
    project = await _shared_project(request, services, token)
    if project is None:
        view = request.scope.get("query_string", b"").decode("latin-1")[:4000]
        return page(
            request, "share_password.html.j2", 401, link=await _link(services, token), view=view
        )
    return await render_dashboard(request, services, project, f"/share/{token}")


@get("/share/{token:str}/realtime", include_in_schema=False)
async def share_realtime(request: Request, services: Services, token: str) -> Template:
    project = await _shared_project(request, services, token)
    if project is None:
        raise PageError(status_code=403, detail="This link needs its password.")
    return await render_realtime(request, services, project, f"/share/{token}")


@get("/share/{token:str}/fragments/{name:str}", include_in_schema=False)
async def share_fragment(
    request: Request, services: Services, token: str, name: str, panel: str = ""
) -> Template:
    project = await _shared_project(request, services, token)
    if project is None:
        raise PageError(status_code=403, detail="This link needs its password.")
    return await render_fragment(request, services, project, f"/share/{token}", name, panel)


@get("/share/{token:str}/export/{name:str}", include_in_schema=False)
async def share_download(
    request: Request, services: Services, token: str, name: str
) -> Response[str]:
    project = await _shared_project(request, services, token)
    if project is None:
        raise PageError(status_code=403, detail="This link needs its password.")
    return await render_download(request, services, project, name)


@post("/share/{token:str}", include_in_schema=False)
async def share_unlock(request: Request, services: Services, token: str) -> Response:
    link = await _link(services, token)
    form = await form_of(request)
    if not link["password_hash"]:
        return Redirect(go(request, f"/share/{token}"), status_code=303)
    try:
        ok = await services.web_auth.unlock_share(
            link["token"],
            link["password_hash"],
            str(form.get("password", "")),
            auth.client_ip(request),
        )
    except auth.Throttled:
        return page(
            request,
            "share_password.html.j2",
            429,
            link=link,
            error="Too many wrong passwords. Wait 15 minutes and try again.",
        )
    if not ok:
        return page(
            request,
            "share_password.html.j2",
            401,
            link=link,
            view=str(form.get("view", ""))[:4000],
            error="Wrong password.",
        )
    key = secrets.token_urlsafe(24)
    await services.redis.set(services.keys.share_unlock(key), token, ex=SHARE_UNLOCK_TTL_S)
    cookie = auth.share_cookie(UNLOCK_COOKIE, key, token, request)
    # back to the view the link was opened with (its range, filters, tabs)
    view = urlencode(parse_qsl(str(form.get("view", ""))[:4000]))
    target = f"/share/{token}" + (f"?{view}" if view else "")
    return Redirect(go(request, target), cookies=[cookie], status_code=303)


SHARE_ROUTES = [share_page, share_realtime, share_fragment, share_download, share_unlock]
