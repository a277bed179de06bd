"""Admin pages: first-run setup, login, projects and their clients, install check, users and
grants, share links. Jinja2 templates in templates/admin; plain forms that work without
JavaScript; only the install check polls (with the small fragment script in assets/js).

Every state-changing request checks the CSRF token; every project page checks the user's role
on that project and answers 404 when there is none (existence is not revealed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from gatrix.clickhouse.footprint import footprint
from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.ingest import health as ingest_health
from gatrix.meta import accounts, keeping
from gatrix.meta import goals as goal_defs
from gatrix.meta.accounts import AccountError, UserInfo
from gatrix.meta.projects import create_client, create_project
from gatrix.services import Services
from gatrix.web import auth
from gatrix.web.kit import (
    PageError,
    base_url,
    current_user,
    done,
    form_of,
    go,
    page,
    require_role,
    require_user,
    safe_next,
    take_flash,
)

# --- first run, login


@get("/", include_in_schema=False)
async def home(request: Request, services: Services) -> Redirect:
    engine = services.engine
    if not await asyncio.to_thread(accounts.has_users, engine):
        return Redirect(go(request, "/setup"))
    logged_in = await current_user(request, services) is not None
    return Redirect(go(request, "/projects" if logged_in else "/login"))


@get("/setup", include_in_schema=False)
async def setup_page(request: Request, services: Services) -> Template:
    if await asyncio.to_thread(accounts.has_users, services.engine):
        raise PageError(status_code=404, detail="Setup is done.")
    return page(request, "admin/setup.html.j2")


@post("/setup", include_in_schema=False)
async def setup_submit(request: Request, services: Services) -> Response:
    form = await form_of(request)
    engine = services.engine
    if await asyncio.to_thread(accounts.has_users, engine):
        raise PageError(status_code=404, detail="Setup is done.")
    try:
        user = await asyncio.to_thread(
            accounts.create_user, engine, form.get("email", ""), form.get("password", ""), True
        )
    except AccountError as exc:
        return page(
            request, "admin/setup.html.j2", 400, error=str(exc), email=form.get("email", "")
        )
    return await _logged_in(request, services, user)


async def _logged_in(
    request: Request, services: Services, user: UserInfo, back_to: str = ""
) -> Response:
    token = await services.web_auth.start_session(user.id)
    return Redirect(
        go(request, safe_next(back_to) or "/projects"),
        cookies=[auth.session_cookie(token, request)],
        status_code=303,
    )


@get("/login", include_in_schema=False)
async def login_page(request: Request, services: Services) -> Template:
    # a deep link opened while logged out comes back to itself after the login
    return page(
        request, "admin/login.html.j2", next=safe_next(request.query_params.get("next", ""))
    )


@post("/login", include_in_schema=False)
async def login_submit(request: Request, services: Services) -> Response:
    form = await form_of(request)
    email = str(form.get("email", ""))[:240]
    password = str(form.get("password", ""))
    back_to = safe_next(str(form.get("next", "")))
    try:
        user = await services.web_auth.log_in(
            services.engine, email, password, auth.client_ip(request)
        )
    except auth.Throttled:
        return page(
            request,
            "admin/login.html.j2",
            429,
            email=email,
            next=back_to,
            error="Too many failed logins. Wait 15 minutes and try again.",
        )
    if user is None:
        return page(
            request,
            "admin/login.html.j2",
            401,
            email=email,
            next=back_to,
            error="Wrong email or password.",
        )
    return await _logged_in(request, services, user, back_to)


@post("/logout", include_in_schema=False)
async def logout(request: Request, services: Services) -> Response:
    await form_of(request)
    await services.web_auth.end_session(request)
    return Redirect(
        go(request, "/login"), cookies=[auth.clear_session_cookie(request)], status_code=303
    )


# --- projects


@get("/projects", include_in_schema=False)
async def projects_page(request: Request, services: Services) -> Template:
    user = await require_user(request, services)
    projects = await asyncio.to_thread(accounts.visible_projects, services.engine, user)
    return page(request, "admin/projects.html.j2", user=user, projects=projects)


@post("/projects", include_in_schema=False)
async def projects_create(request: Request, services: Services) -> Response:
    user = await require_user(request, services)
    form = await form_of(request)
    if not user.is_admin:
        raise PageError(status_code=403, detail="Only administrators create projects.")
    try:
        origins = accounts.parse_origins(str(form.get("origins", "")))
        created = await asyncio.to_thread(
            create_project,
            services.engine,
            str(form.get("name", "")),
            origins,
            str(form.get("timezone") or "UTC"),
            str(form.get("kind") or "website"),
        )
    except (AccountError, ValueError) as exc:
        projects = await asyncio.to_thread(accounts.visible_projects, services.engine, user)
        return page(
            request, "admin/projects.html.j2", 400, user=user, projects=projects, error=str(exc)
        )
    return await done(
        request,
        services,
        user,
        f"/projects/{created.project_id}/settings",
        new_client=created.__dict__,
    )


def _settings_path(project_id: str) -> str:
    return f"/projects/{project_id}/settings"


async def _admin_page(
    request: Request,
    services: Services,
    user: UserInfo,
    project_id: str,
    status: int = 200,
    **extra: Any,
) -> Response:
    engine = services.engine
    project = await asyncio.to_thread(accounts.project_admin_view, engine, project_id)
    if project is None:
        raise PageError(status_code=404, detail="No such project.")
    # the install check comes with the figures, from the same reads: they cannot disagree
    health = await ingest_health.project_health(services, project_id, project["timezone"])
    # a form sent back with an error shows what was typed (`keeping` in extra), not the rows
    if "keeping" not in extra:
        extra["keeping"] = await asyncio.to_thread(keeping.keeping, engine, project_id)
    goals = await asyncio.to_thread(goal_defs.list_goals, engine, project_id)
    try:
        stored = await services.reads.run(footprint, services.store, project_id)
    except QueryTooHeavy:  # past the budget or busy: the rest of the page must stay usable
        stored = None
    oldest = (
        stored and stored.oldest and ingest_health.for_people(stored.oldest, project["timezone"])
    )
    return page(
        request,
        "admin/settings.html.j2",
        status,
        user=user,
        project=project,
        base_url=base_url(request, services),
        health=health,
        stored=stored,
        oldest=oldest or "",
        goals=goals,
        **extra,
    )


@get("/projects/{project_id:str}/settings", include_in_schema=False)
async def settings_page(request: Request, services: Services, project_id: str) -> Template:
    user, _ = await require_role(request, services, project_id, admin=True)
    flash = await take_flash(request, services, user)
    return await _admin_page(request, services, user, project_id, **flash)


@post("/projects/{project_id:str}/settings", include_in_schema=False)
async def settings_submit(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    try:
        origins = accounts.parse_origins(str(form.get("origins", "")))
        await asyncio.to_thread(
            accounts.update_project,
            services.engine,
            project_id,
            str(form.get("name", "")),
            origins,
            str(form.get("timezone", "UTC")),
            str(form.get("kind", "")),
            user,
        )
    except AccountError as exc:
        return await _admin_page(request, services, user, project_id, status=400, error=str(exc))
    services.directory.forget()  # new origins apply to this process at once
    return await done(request, services, user, _settings_path(project_id), notice="Saved.")


@post("/projects/{project_id:str}/umami", include_in_schema=False)
async def umami_submit(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    try:
        await asyncio.to_thread(
            accounts.set_umami_website_id,
            services.engine,
            project_id,
            str(form.get("umami_website_id", "")),
        )
    except AccountError as exc:
        return await _admin_page(request, services, user, project_id, status=400, error=str(exc))
    services.directory.forget()  # the new id applies to this process at once
    return await done(request, services, user, _settings_path(project_id), notice="Saved.")


@post("/projects/{project_id:str}/delete", include_in_schema=False)
async def project_delete(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    project = await asyncio.to_thread(accounts.project_admin_view, services.engine, project_id)
    if project is None or form.get("confirm", "") != project["name"]:
        return await _admin_page(
            request,
            services,
            user,
            project_id,
            status=400,
            error="Type the project's name to confirm deletion.",
        )
    await asyncio.to_thread(services.store.delete_project, project_id)
    await asyncio.to_thread(accounts.delete_project_rows, services.engine, project_id)
    await services.counters.forget(project_id)
    services.directory.forget()
    return Redirect(go(request, "/projects"), status_code=303)


@post("/projects/{project_id:str}/clients", include_in_schema=False)
async def client_create(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    try:
        created = await asyncio.to_thread(
            create_client,
            services.engine,
            project_id,
            str(form.get("type", "write")),
            str(form.get("name", ""))[:200],
        )
    except ValueError as exc:
        return await _admin_page(request, services, user, project_id, status=400, error=str(exc))
    return await done(
        request, services, user, _settings_path(project_id), new_client=created.__dict__
    )


@post("/projects/{project_id:str}/clients/{client_id:str}/revoke", include_in_schema=False)
async def client_revoke(
    request: Request, services: Services, project_id: str, client_id: str
) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    await form_of(request)
    try:
        await asyncio.to_thread(accounts.revoke_client, services.engine, project_id, client_id)
    except AccountError as exc:
        return await _admin_page(request, services, user, project_id, status=404, error=str(exc))
    services.directory.forget()
    return await done(request, services, user, _settings_path(project_id), notice="Client revoked.")


@get("/projects/{project_id:str}/install-check", include_in_schema=False)
async def install_check(request: Request, services: Services, project_id: str) -> Template:
    await require_role(request, services, project_id)
    project = await asyncio.to_thread(accounts.project_summary, services.engine, project_id)
    timezone = project["timezone"] if project else "UTC"
    check = await ingest_health.install_check(services, project_id, timezone)
    return page(request, "fragments/install_check.html.j2", project_id=project_id, check=check)


# --- share links


@post("/projects/{project_id:str}/share-links", include_in_schema=False)
async def share_create(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    token = await asyncio.to_thread(
        accounts.create_share_link,
        services.engine,
        project_id,
        str(form.get("password", ""))[:200],
    )
    return await done(request, services, user, _settings_path(project_id), new_share=token)


@post("/projects/{project_id:str}/share-links/{token:str}/revoke", include_in_schema=False)
async def share_revoke(
    request: Request, services: Services, project_id: str, token: str
) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    await form_of(request)
    try:
        await asyncio.to_thread(accounts.revoke_share_link, services.engine, project_id, token)
    except AccountError as exc:
        return await _admin_page(request, services, user, project_id, status=404, error=str(exc))
    return await done(
        request, services, user, _settings_path(project_id), notice="Share link revoked."
    )


# --- users


@get("/users", include_in_schema=False)
async def users_page(request: Request, services: Services) -> Template:
    user = await _require_admin(request, services)
    return await _users(request, services, user, **await take_flash(request, services, user))


async def _require_admin(request: Request, services: Services) -> UserInfo:
    user = await require_user(request, services)
    if not user.is_admin:
        raise PageError(status_code=403, detail="Only administrators manage users.")
    return user


async def _users(
    request: Request, services: Services, user: UserInfo, status: int = 200, **extra: Any
) -> Template:
    engine = services.engine
    users = await asyncio.to_thread(accounts.list_users, engine)
    projects = await asyncio.to_thread(accounts.visible_projects, engine, user)
    return page(
        request, "admin/users.html.j2", status, user=user, users=users, projects=projects, **extra
    )


@post("/users", include_in_schema=False)
async def users_create(request: Request, services: Services) -> Response:
    user = await _require_admin(request, services)
    form = await form_of(request)
    try:
        await asyncio.to_thread(
            accounts.create_user,
            services.engine,
            str(form.get("email", "")),
            str(form.get("password", "")),
            form.get("is_admin") == "on",
        )
    except AccountError as exc:
        return await _users(request, services, user, 400, error=str(exc))
    return await done(request, services, user, "/users", notice="User created.")


@post("/users/{user_id:int}/grants", include_in_schema=False)
async def grant_create(request: Request, services: Services, user_id: int) -> Response:
    user = await _require_admin(request, services)
    form = await form_of(request)
    try:
        await asyncio.to_thread(
            accounts.grant,
            services.engine,
            user_id,
            str(form.get("project_id", "")),
            str(form.get("role", "")),
        )
    except AccountError as exc:
        return await _users(request, services, user, 400, error=str(exc))
    return await done(request, services, user, "/users", notice="Access granted.")


@post("/users/{user_id:int}/grants/{project_id:str}/delete", include_in_schema=False)
async def grant_delete(
    request: Request, services: Services, user_id: int, project_id: str
) -> Response:
    user = await _require_admin(request, services)
    await form_of(request)
    await asyncio.to_thread(accounts.revoke_grant, services.engine, user_id, project_id)
    return await done(request, services, user, "/users", notice="Access removed.")


ADMIN_ROUTES = [
    home,
    setup_page,
    setup_submit,
    login_page,
    login_submit,
    logout,
    projects_page,
    projects_create,
    settings_page,
    settings_submit,
    umami_submit,
    project_delete,
    client_create,
    client_revoke,
    install_check,
    share_create,
    share_revoke,
    users_page,
    users_create,
    grant_create,
    grant_delete,
]
