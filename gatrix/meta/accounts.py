"""Users, their per-project roles, project settings and share links (metadata database).

Blocking SQL: web handlers call these through a worker thread. A global admin (`is_admin`)
holds the admin role on every project; everyone else sees only projects granted to them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gatrix.meta.models import (
    PROJECT_KINDS,
    ROLES,
    Annotation,
    Client,
    Goal,
    Project,
    ProjectGrant,
    SavedView,
    ShareLink,
    User,
)
from gatrix.meta.projects import (
    hash_secret,
    normalize_origin,
    validate_timezone,
    verify_secret,
    without_port,
)

EMAIL = re.compile(r"^[^@\s]{1,120}@[^@\s]{1,120}$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    """A request the user can fix (shown on the form)."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    email: str
    is_admin: bool


def normalize_email(email: str) -> str:
    """The one spelling of an email: how users are stored, looked up and throttled.

    `lower`, not `casefold`: stored addresses were lowered, and casefolding would rewrite
    some of them (`ß` becomes `ss`) so that they no longer match.
    """
    return email.strip().lower()


def _info(user: User) -> UserInfo:
    assert user.id is not None
    return UserInfo(user.id, user.email, user.is_admin)


# --- users


def has_users(engine: Engine) -> bool:
    with Session(engine) as db:
        return db.exec(select(User.id).limit(1)).first() is not None


def create_user(engine: Engine, email: str, password: str, is_admin: bool = False) -> UserInfo:
    email = normalize_email(email)
    if not EMAIL.match(email):
        raise AccountError("enter a valid email address")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
    with Session(engine) as db:
        if db.exec(select(User).where(User.email == email)).first() is not None:
            raise AccountError("a user with this email exists already")
        user = User(email=email, password_hash=hash_secret(password), is_admin=is_admin)
        db.add(user)
        db.commit()
        db.refresh(user)
        return _info(user)


def authenticate(engine: Engine, email: str, password: str) -> UserInfo | None:
    email = normalize_email(email)
    with Session(engine) as db:
        user = db.exec(select(User).where(User.email == email)).first()
    if user is not None and normalize_email(user.email) != email:
        # MariaDB's default collation ignores case, accents and trailing spaces, so the
        # database can return an account under a spelling the throttle counts apart
        user = None
    if user is None:
        verify_secret(password, hash_secret("timing"))  # same cost whether or not it exists
        return None
    return _info(user) if verify_secret(password, user.password_hash) else None


def get_user(engine: Engine, user_id: int) -> UserInfo | None:
    with Session(engine) as db:
        user = db.get(User, user_id)
        return _info(user) if user else None


def list_users(engine: Engine) -> list[dict]:
    with Session(engine) as db:
        users = db.exec(select(User).order_by(User.email)).all()
        grants = db.exec(select(ProjectGrant)).all()
    by_user: dict[int, list[dict]] = {}
    for g in grants:
        by_user.setdefault(g.user_id, []).append({"project_id": g.project_id, "role": g.role})
    return [
        {"id": u.id, "email": u.email, "is_admin": u.is_admin, "grants": by_user.get(u.id or 0, [])}
        for u in users
    ]


# --- roles


def role(engine: Engine, user: UserInfo, project_id: str) -> str | None:
    """'admin', 'viewer' or None (no access). Unknown projects give None."""
    with Session(engine) as db:
        if db.get(Project, project_id) is None:
            return None
        if user.is_admin:
            return "admin"
        grant = db.exec(
            select(ProjectGrant).where(
                ProjectGrant.user_id == user.id, ProjectGrant.project_id == project_id
            )
        ).first()
        return grant.role if grant else None


def grant(engine: Engine, user_id: int, project_id: str, role_name: str) -> None:
    if role_name not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    with Session(engine) as db:
        if db.get(Project, project_id) is None or db.get(User, user_id) is None:
            raise AccountError("unknown user or project")
        existing = db.exec(
            select(ProjectGrant).where(
                ProjectGrant.user_id == user_id, ProjectGrant.project_id == project_id
            )
        ).first()
        if existing:
            existing.role = role_name
        else:
            db.add(ProjectGrant(user_id=user_id, project_id=project_id, role=role_name))
        db.commit()


def revoke_grant(engine: Engine, user_id: int, project_id: str) -> None:
    with Session(engine) as db:
        db.execute(
            delete(ProjectGrant).where(
                ProjectGrant.user_id == user_id, ProjectGrant.project_id == project_id
            )
        )
        db.commit()


# --- projects


def visible_projects(engine: Engine, user: UserInfo) -> list[dict]:
    with Session(engine) as db:
        if user.is_admin:
            rows = [(p, "admin") for p in db.exec(select(Project).order_by(Project.name)).all()]
        else:
            rows = list(
                db.exec(
                    select(Project, ProjectGrant.role)
                    .join(ProjectGrant, ProjectGrant.project_id == Project.id)
                    .where(ProjectGrant.user_id == user.id)
                    .order_by(Project.name)
                ).all()
            )
    return [
        {
            "id": p.id,
            "name": p.name,
            "kind": p.kind,
            "timezone": p.timezone,
            "origins": p.origins,
            "role": r,
        }
        for p, r in rows
    ]


def _summary(project: Project) -> dict:
    return {
        "id": project.id,
        "name": project.name,
        "kind": project.kind,
        "timezone": project.timezone,
        "origins": project.origins,
        "umami_website_id": project.umami_website_id,
    }


def project_summary(engine: Engine, project_id: str) -> dict | None:
    """What the dashboard needs of a project (no clients, no share links)."""
    with Session(engine) as db:
        project = db.get(Project, project_id)
        return _summary(project) if project is not None else None


def project_admin_view(engine: Engine, project_id: str) -> dict | None:
    """A project with its clients and live share links, for its admin page."""
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            return None
        clients = db.exec(
            select(Client).where(Client.project_id == project_id).order_by(Client.created_at)
        ).all()
        links = db.exec(
            select(ShareLink)
            .where(ShareLink.project_id == project_id, ShareLink.revoked == False)  # noqa: E712
            .order_by(ShareLink.created_at)
        ).all()
        summary = _summary(project)
    return {
        **summary,
        "clients": [
            {"id": c.id, "name": c.name, "type": c.type, "revoked": c.revoked} for c in clients
        ],
        "share_links": [
            {"token": link.token, "protected": bool(link.password_hash)} for link in links
        ],
    }


# an allowed origin once its scheme, path and `www.` are gone: a host name (or `*.` and one),
# an IPv4 address or a bracketed IPv6 one, and at most a numeric port
_ORIGIN = re.compile(r"(\*\.)?[^:/?#@\s\[\]*]+(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?")


def parse_origins(text: str) -> list[str]:
    origins = [o.strip() for o in re.split(r"[\s,]+", text or "") if o.strip()]
    for origin in origins:
        if len(origin) > 253:
            raise AccountError("origins are at most 253 characters")
        if origin != "*" and not _ORIGIN.fullmatch(normalize_origin(origin)):
            raise AccountError(f"invalid origin {origin!r}")
    return origins


Site = tuple[str, bool]  # (host, whether every subdomain of it is meant)


def _site(origin: str) -> Site | None:
    """The sites an allowed origin names, in one spelling whatever the scheme, case, `www.`,
    port, trailing dot or script (`normalize_origin` writes hosts in IDNA); None for `*`,
    which names no site. Origins saved before `parse_origins` refused a user part or a
    query are read past them."""
    if origin.strip() == "*":
        return None
    value = re.split(r"[/?#]", normalize_origin(origin))[0].rsplit("@", 1)[-1]
    host = without_port(value)
    if host.startswith("["):
        with contextlib.suppress(ValueError):
            host = f"[{ipaddress.ip_address(host.strip('[]')).compressed}]"
        return host, False
    wildcard = host.startswith("*.")
    return host.removeprefix("*.").removeprefix("www.").rstrip("."), wildcard


def _overlap(a: Site, b: Site) -> bool:
    """Whether a Plausible `domain` could be named by both (exactly, or under a wildcard)."""

    def under(host: str, parent: str) -> bool:
        return host == parent or host.endswith("." + parent)

    (host_a, wild_a), (host_b, wild_b) = a, b
    return (
        (wild_a and under(host_b, host_a)) or (wild_b and under(host_a, host_b)) or host_a == host_b
    )


def _check_sites_are_theirs(
    db: Session, engine: Engine, user: UserInfo, project: Project, origins: list[str]
) -> None:
    """A site another project already names (the same host, or one under its wildcard, or a
    wildcard over its hosts) may be added only by someone who administers that project too:
    a Plausible `domain` picks the project naming it, so one project's admin could otherwise
    take another's traffic."""
    kept = {_site(o) for o in project.origins}
    added = [(o, site) for o in origins if (site := _site(o)) is not None and site not in kept]
    if not added or user.is_admin:
        return
    for other in db.exec(select(Project).where(Project.id != project.id)).all():
        theirs = [site for o in other.origins if (site := _site(o)) is not None]
        clash = next((o for o, site in added if any(_overlap(site, t) for t in theirs)), None)
        if clash is not None and role(engine, user, other.id) != "admin":
            raise AccountError(
                f"{clash} names a site of another project (one you do not administer)"
            )


def update_project(
    engine: Engine,
    project_id: str,
    name: str,
    origins: list[str],
    timezone: str,
    kind: str,
    user: UserInfo | None = None,
) -> None:
    """`user`: who saves it (the sites they may add are checked); None from the command line."""
    if not name.strip() or len(name) > 200:
        raise AccountError("a project name has 1 to 200 characters")
    if kind not in PROJECT_KINDS:
        raise AccountError(f"kind must be one of {', '.join(PROJECT_KINDS)}")
    try:
        validate_timezone(timezone)
    except ValueError as exc:
        raise AccountError(str(exc)) from exc
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            raise AccountError("unknown project")
        if user is not None:
            _check_sites_are_theirs(db, engine, user, project, origins)
        project.name, project.kind, project.timezone = name.strip(), kind, timezone
        project.origins_json = json.dumps(origins)
        db.commit()


_WEBSITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def set_umami_website_id(engine: Engine, project_id: str, website_id: str) -> None:
    """The `website` id Umami's tracker sends for this project; empty: its client id."""
    website_id = website_id.strip()
    if website_id and not _WEBSITE_ID.match(website_id):
        raise AccountError("an Umami website id is 1 to 64 letters, digits, - or _")
    with Session(engine) as db:
        project = db.get(Project, project_id)
        if project is None:
            raise AccountError("unknown project")
        if website_id:
            # in any case: ids that differ by case alone are too easily taken for one another
            lowered = website_id.lower()
            taken = db.exec(
                select(Project).where(
                    func.lower(Project.umami_website_id) == lowered, Project.id != project_id
                )
            ).first()
            # another project's client id is what its own Umami trackers send by default
            client = db.exec(
                select(Client).where(
                    func.lower(Client.id) == lowered, Client.project_id != project_id
                )
            ).first()
            if taken is not None or client is not None:
                raise AccountError("another project already answers to this Umami website id")
        project.umami_website_id = website_id
        db.commit()


def delete_project_rows(engine: Engine, project_id: str) -> None:
    with Session(engine) as db:
        for model in (ProjectGrant, ShareLink, Client, Goal, SavedView, Annotation):
            db.execute(delete(model).where(model.project_id == project_id))
        db.execute(delete(Project).where(Project.id == project_id))
        db.commit()


def revoke_client(engine: Engine, project_id: str, client_id: str) -> None:
    with Session(engine) as db:
        client = db.get(Client, client_id)
        if client is None or client.project_id != project_id:
            raise AccountError("unknown client")
        client.revoked = True
        db.commit()


# --- share links


def create_share_link(engine: Engine, project_id: str, password: str = "") -> str:
    token = secrets.token_urlsafe(24)
    with Session(engine) as db:
        db.add(
            ShareLink(
                token=token,
                project_id=project_id,
                password_hash=hash_secret(password) if password else None,
            )
        )
        db.commit()
    return token


def revoke_share_link(engine: Engine, project_id: str, token: str) -> None:
    with Session(engine) as db:
        link = db.get(ShareLink, token)
        if link is None or link.project_id != project_id:
            raise AccountError("unknown share link")
        link.revoked = True
        db.commit()


def share_link(engine: Engine, token: str) -> dict | None:
    """The live (unrevoked) link with its project, or None."""
    if not token or len(token) > 64:
        return None
    with Session(engine) as db:
        link = db.get(ShareLink, token)
        if link is None or link.revoked:
            return None
        project = db.get(Project, link.project_id)
        if project is None:
            return None
        return {
            "token": link.token,
            "project_id": project.id,
            "project_name": project.name,
            "timezone": project.timezone,
            "password_hash": link.password_hash,
        }
