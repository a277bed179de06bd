"""The toolkit every page uses: rendering with a CSRF token, reading a form (CSRF checked),
the login and role guards, the error a page raises, and app paths under the path prefix."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template

from gatrix.buffer.keys import FLASH_TTL_S
from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights.admission import ReadsBusy, caller
from gatrix.meta import accounts
from gatrix.meta.accounts import UserInfo
from gatrix.services import Services
from gatrix.web import auth
from gatrix.web.hosts import public_base_url


class PageError(HTTPException):
    """Rendered as an HTML error page for the browser."""


def page(request: Request, template: str, status: int = 200, **context: Any) -> Template:
    token = auth.csrf_token(request)
    cookies = [auth.csrf_cookie(new, request)] if (new := auth.new_csrf_cookie(request)) else []
    return Template(
        template_name=template,
        context={"csrf": token, **context},
        status_code=status,
        cookies=cookies,
    )


async def form_of(request: Request) -> dict[str, Any]:
    form = dict(await request.form())
    if any("\x00" in str(value) for value in form.values()):
        # PostgreSQL refuses NUL in text: refuse it here, as the bad input it is
        raise PageError(status_code=400, detail="A form field contains a NUL character.")
    if not auth.csrf_ok(request, form):
        raise PageError(status_code=403, detail="Missing or wrong CSRF token: reload the page.")
    return form


async def current_user(request: Request, services: Services) -> UserInfo | None:
    user_id = await services.web_auth.session_user_id(request)
    if user_id is None:
        return None
    return await asyncio.to_thread(accounts.get_user, services.engine, user_id)


async def require_user(request: Request, services: Services) -> UserInfo:
    user = await current_user(request, services)
    if user is None:
        raise PageError(status_code=401, detail="Log in first.")
    return user


async def require_role(
    request: Request, services: Services, project_id: str, admin: bool = False
) -> tuple[UserInfo, str]:
    user = await require_user(request, services)
    role = await asyncio.to_thread(accounts.role, services.engine, user, project_id)
    if role is None:
        raise PageError(status_code=404, detail="No such project.")
    if admin and role != "admin":
        raise PageError(status_code=403, detail="Only project admins can do this.")
    caller.set(f"user:{user.id}")  # this request's reads queue as this user's
    return user, role


def too_heavy_page(exc: QueryTooHeavy) -> PageError:
    """A page whose report could not run: 422 past the budget (the same question fails
    again), 429/503 when reads are queued too deep (it passes later)."""
    if isinstance(exc, ReadsBusy):
        status = 429 if exc.limit == "queue" else 503
        headers = {"retry-after": str(exc.retry_after)}
        return PageError(status_code=status, detail=exc.advice, headers=headers)
    return PageError(status_code=422, detail=exc.advice)


# where a login may send the browser back to: app pages only, never another site
_NEXT_PREFIXES = ("/dashboard/", "/projects", "/users")


def safe_next(value: str) -> str:
    """`next` as an app path to return to after logging in, or "" when it is not one."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith(_NEXT_PREFIXES)
        or any(c in value for c in ("\\", "\r", "\n", "\x00"))
        or value.startswith("//")
    ):
        return ""
    return value


def login_url(request: Request, back_to: str) -> str:
    """The login form, remembering the page to come back to."""
    back = safe_next(back_to)
    return go(request, "/login" + (f"?{urlencode({'next': back})}" if back else ""))


def go(request: Request, path: str) -> str:
    """An app path as the browser must see it (under GATRIX_ROOT_PATH when set)."""
    return request.app.state.settings.root_path + path


def base_url(request: Request, services: Services) -> str:
    return public_base_url(services.settings, auth.scheme(request), request.headers.get("host", ""))


async def done(
    request: Request, services: Services, user: UserInfo, path: str, **flash: Any
) -> Redirect:
    """Post/Redirect/Get: a form that changed something answers with a redirect, so a refresh
    never sends it again. What the next page must show once (a notice, a secret shown only
    this time) waits in Redis under a random token, for this user only."""
    if not flash:
        return Redirect(go(request, path), status_code=303)
    token = secrets.token_urlsafe(16)
    record = json.dumps({"user": user.id, **flash})
    await services.redis.set(services.keys.flash(token), record, ex=FLASH_TTL_S)
    joiner = "&" if "?" in path else "?"  # a page may take its subject as a query parameter
    return Redirect(go(request, f"{path}{joiner}flash={token}"), status_code=303)


async def take_flash(request: Request, services: Services, user: UserInfo) -> dict[str, Any]:
    """The redirected form's result, once (a refresh shows the page without it)."""
    token = request.query_params.get("flash", "")
    if not token or len(token) > 64:
        return {}
    raw = await services.redis.getdel(services.keys.flash(token))
    record = json.loads(raw) if raw else {}
    return record if record.pop("user", None) == user.id else {}


def plain_number(text: str, max_digits: int) -> bool:
    """ASCII digits only, at most `max_digits` of them: `str.isdigit` alone also accepts
    characters such as "²" that `int()` then refuses."""
    return text.isascii() and text.isdigit() and len(text) <= max_digits
