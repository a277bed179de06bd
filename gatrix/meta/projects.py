"""Projects and clients: creation, cached lookup, origin matching and secret checks.

The ingest path never runs SQL per request: client look-ups are cached for a few seconds
(so a revoked client stops working within `CACHE_TTL`), unknown ids are cached too (so random
ids cannot hammer the database), and a verified secret is remembered by its SHA-256 so the
deliberately slow KDF runs once per client and secret, not per event.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gatrix.ingest.exclusions import Exclusions, compile_rules, loads
from gatrix.meta import timezones
from gatrix.meta.models import CLIENT_TYPES, PROJECT_KINDS, Client, Project

CACHE_TTL = 10.0
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


# --- secrets


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    encoded = f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    return f"scrypt${params}${encoded}"


def verify_secret(secret: str, stored: str | None) -> bool:
    if not stored or not secret:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            dklen=len(expected),
            n=int(n),
            r=int(r),
            p=int(p),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# --- origins


def normalize_origin(value: str) -> str:
    value = value.strip().lower().rstrip("/")
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value)
    value = value.split("/", 1)[0]
    if value.startswith("www."):
        value = value[4:]
    return _ascii_host(value) if not value.isascii() else value


def _ascii_host(value: str) -> str:
    """An internationalised host in the ASCII form browsers send in `Origin` (IDNA:
    `bücher.de` → `xn--bcher-kva.de`), so either spelling names the same site."""
    host = without_port(value)
    port = value[len(host) :]
    wildcard = "*." if host.startswith("*.") else ""
    try:
        return wildcard + host.removeprefix("*.").encode("idna").decode("ascii") + port
    except UnicodeError:
        return value


@lru_cache(maxsize=4096)
def origin_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    host = normalize_origin(origin)
    if not host:
        return False
    for raw in patterns:
        pattern = normalize_origin(raw) if raw.strip() != "*" else "*"
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and (host == pattern[2:] or host.endswith(pattern[1:])):
            return True
    return False


def domain_rank(domain: str, patterns: tuple[str, ...]) -> int:
    """How specifically a project's allowed origins name a site's domain (Plausible's
    `domain`): 3 exactly, 2 by host name whatever the port (a domain usually has none, an
    origin may), 1 through a `*.example.com` wildcard, 0 not at all. `*` names no domain: a
    project accepting any origin must not collect every site's events."""
    name = normalize_origin(domain)
    host = without_port(name)
    if not host:
        return 0
    rank = 0
    for raw in patterns:
        pattern = normalize_origin(raw)
        if pattern == name:
            return 3
        bare = without_port(pattern)
        if bare == host:
            rank = 2
        elif bare.startswith("*.") and (host == bare[2:] or host.endswith(bare[1:])):
            rank = max(rank, 1)
    return rank


def without_port(host_port: str) -> str:
    """A normalized origin's host: `[2001:db8::1]:8080` → `[2001:db8::1]` (an IPv6 address
    keeps its colons), `example.com:443` → `example.com`."""
    if host_port.startswith("["):
        end = host_port.find("]")
        return host_port[: end + 1] if end > 0 else host_port
    return host_port.rsplit(":", 1)[0]


# --- creation


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug or "project"


def validate_timezone(tz: str) -> str:
    return timezones.validate(tz)


@dataclass(frozen=True)
class NewClient:
    project_id: str
    client_id: str
    client_secret: str


def create_project(
    engine: Engine,
    name: str,
    origins: list[str] | None = None,
    timezone: str = "UTC",
    kind: str = "website",
    is_default: bool = False,
) -> NewClient:
    if not name.strip():
        raise ValueError("project name is required")
    if kind not in PROJECT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PROJECT_KINDS)}")
    validate_timezone(timezone)
    with Session(engine) as db:
        base = slugify(name)
        project_id = base
        while db.get(Project, project_id) is not None:
            project_id = f"{base}-{secrets.token_hex(3)}"
        db.add(
            Project(
                id=project_id,
                name=name.strip(),
                origins_json=json.dumps([o.strip() for o in origins or [] if o.strip()]),
                timezone=timezone,
                kind=kind,
                is_default=is_default,
            )
        )
        db.commit()
    return create_client(engine, project_id, "root", name="default")


def create_client(engine: Engine, project_id: str, type_: str, name: str = "") -> NewClient:
    if type_ not in CLIENT_TYPES:
        raise ValueError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
    client_id = str(uuid.uuid4())
    secret = "sec_" + secrets.token_urlsafe(24)
    with Session(engine) as db:
        if db.get(Project, project_id) is None:
            raise ValueError(f"unknown project: {project_id}")
        db.add(
            Client(
                id=client_id,
                project_id=project_id,
                name=name,
                type=type_,
                secret_hash=hash_secret(secret),
            )
        )
        db.commit()
    return NewClient(project_id, client_id, secret)


def default_client_id(engine: Engine) -> str | None:
    with Session(engine) as db:
        project = db.exec(select(Project).where(Project.is_default == True)).first()  # noqa: E712
    return tracking_client_id(engine, project.id) if project is not None else None


def tracking_client_id(engine: Engine, project_id: str) -> str | None:
    """The client a snippet should carry: the oldest live write client, else the oldest live
    root client (a new default project has only that one); never a read-only one."""
    with Session(engine) as db:
        clients = db.exec(
            select(Client)
            .where(
                Client.project_id == project_id,
                Client.revoked == False,  # noqa: E712
                Client.type != "read",
            )
            .order_by(Client.created_at)
        ).all()
    writers = [c for c in clients if c.type == "write"] or list(clients)
    return writers[0].id if writers else None


def load_umami_client(engine: Engine, website_id: str) -> ClientInfo | None:
    """The client an Umami `website` id stands for: the client with this id if its project
    chose no website id of its own (a project's own client id comes first: no other project
    can answer to it), else the tracking client of the project that chose this id."""
    info = load_client(engine, website_id)
    if info is not None:
        with Session(engine) as db:
            owner = db.get(Project, info.project_id)
        if owner is not None and not owner.umami_website_id:
            return info
    with Session(engine) as db:
        project = db.exec(select(Project).where(Project.umami_website_id == website_id)).first()
    if project is not None:
        client_id = tracking_client_id(engine, project.id)
        return load_client(engine, client_id) if client_id else None
    return None


def load_sites(engine: Engine) -> list[tuple[tuple[str, ...], str]]:
    """(allowed origins, tracking client id) of every project that has one, oldest project
    first: what a Plausible `domain` is matched against."""
    with Session(engine) as db:
        rows = db.exec(
            select(Project, Client)
            .join(Client, Client.project_id == Project.id)
            .where(Client.revoked == False, Client.type != "read")  # noqa: E712
            .order_by(Project.created_at, Project.id, Client.created_at)
        ).all()
    chosen: dict[str, tuple[tuple[str, ...], str, bool]] = {}
    for project, client in rows:
        current = chosen.get(project.id)
        # the same rule as tracking_client_id: the oldest write client, else the oldest root
        if current is None or (client.type == "write" and not current[2]):
            chosen[project.id] = (tuple(project.origins), client.id, client.type == "write")
    return [(origins, client_id) for origins, client_id, _ in chosen.values()]


# --- lookup


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: str
    project_id: str
    type: str
    secret_hash: str | None
    origins: tuple[str, ...]
    timezone: str
    # compiled once per cache fill: the request path only matches (None: no rules)
    exclusions: Exclusions | None = None
    # days of events the project keeps (0: all); older client times are not accepted
    retention_days: int = 0

    @property
    def can_write(self) -> bool:
        return self.type in ("write", "root")

    @property
    def can_read(self) -> bool:
        return self.type in ("read", "root")


def load_client(engine: Engine, client_id: str) -> ClientInfo | None:
    with Session(engine) as db:
        row = db.exec(
            select(Client, Project)
            .join(Project, Project.id == Client.project_id)
            .where(Client.id == client_id, Client.revoked == False)  # noqa: E712
        ).first()
        if row is None:
            return None
        client, project = row
        return ClientInfo(
            client_id=client.id,
            project_id=project.id,
            type=client.type,
            secret_hash=client.secret_hash,
            origins=tuple(project.origins),
            timezone=project.timezone,
            exclusions=compile_rules(loads(project.exclusions_json)),
            retention_days=project.retention_days,
        )


# a client's wrong secrets allowed per window before checks stop (each costs ~40 ms of CPU)
MAX_SECRET_FAILURES = 20
SECRET_FAILURE_WINDOW_S = 10.0


class SecretsThrottled(Exception):
    """Too many wrong secrets for one client lately: answer 429 without checking."""


def failure_share(processes: int) -> int:
    return max(1, MAX_SECRET_FAILURES // max(1, processes))


class Directory:
    """The cache in front of `load_client` and `verify_secret`."""

    def __init__(self, engine: Engine, ttl: float = CACHE_TTL, max_entries: int = 50_000) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_entries = max_entries
        self._clients: dict[str, tuple[float, ClientInfo | None]] = {}
        # verified secrets → when to check again (wrong ones are not remembered: a sender
        # rotating wrong secrets is held back by the failure budget below instead)
        self._secrets: dict[tuple[str, bytes], float] = {}
        # (client, sender address) → when its checks of the last window began, oldest
        # first: a sliding window, so no burst gets the budget twice by straddling the end of
        # a fixed one
        self._failures: dict[tuple[str, str], deque[float]] = {}
        # this process's share of the budget: with N processes a sender's guesses are spread
        # over N counters, so each allows 1/N and the server as a whole still allows the budget
        self.secret_failures = MAX_SECRET_FAILURES
        self._inflight: dict[str, asyncio.Future[ClientInfo | None]] = {}
        self._checking = asyncio.Semaphore(1)
        # a secret being checked right now: concurrent requests with the same secret wait for
        # that one check instead of each spending a scrypt and a place in the failure budget
        self._secret_checks: dict[tuple[str, bytes], asyncio.Future[bool]] = {}
        # Umami website ids → client, and the sites Plausible domains are matched against
        self._umami: dict[str, tuple[float, ClientInfo | None]] = {}
        self._sites: list[tuple[tuple[str, ...], str]] = []
        self._sites_until = 0.0
        self._domains: dict[str, list[str]] = {}
        # told when the cache is dropped, to drop the other processes' caches too
        self.on_forget: Callable[[], None] | None = None

    def cached(self, client_id: str, now: float) -> tuple[bool, ClientInfo | None]:
        hit = self._clients.get(client_id)
        if hit is not None and hit[0] > now:
            return True, hit[1]
        return False, None

    async def client(self, client_id: str) -> ClientInfo | None:
        now = time.monotonic()
        found, info = self.cached(client_id, now)
        if found:
            return info
        # one database query per id however many requests are waiting for it
        pending = self._inflight.get(client_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[client_id] = pending
            try:
                info = await asyncio.to_thread(load_client, self.engine, client_id)
                if len(self._clients) >= self.max_entries:
                    self._clients.clear()
                self._clients[client_id] = (now + self.ttl, info)
                pending.set_result(info)
            except Exception as exc:
                pending.set_exception(exc)
                pending.exception()  # mark retrieved; the raise below reports it
                raise
            finally:
                del self._inflight[client_id]
            return info
        return await asyncio.shield(pending)

    async def secret_ok(self, info: ClientInfo, secret: str, sender: str = "") -> bool:
        """Whether `secret` is this client's; raises SecretsThrottled when this sender (an
        address) tried too many wrong ones for this client lately: each check costs a
        deliberately slow scrypt. Counted per sender, so a stranger guessing from elsewhere
        cannot lock the project's own backend out."""
        key = (info.client_id, hashlib.sha256(secret.encode()).digest())
        now = time.monotonic()
        expires = self._secrets.get(key)
        if expires is not None and expires > now:
            return True
        pending = self._secret_checks.get(key)
        if pending is None:
            budget = (info.client_id, sender)
            checks = self._failures.get(budget)
            if checks is None:
                if len(self._failures) >= self.max_entries:
                    self._failures.clear()
                checks = self._failures[budget] = deque()
            while checks and now - checks[0] > SECRET_FAILURE_WINDOW_S:
                checks.popleft()
            if len(checks) >= self.secret_failures:
                raise SecretsThrottled(info.client_id)
            # counted before the check, as a failure until it proves right: concurrent
            # requests with other secrets must see each other's attempts, or they all pass
            # the budget together
            checks.append(now)
            # a task of its own: a caller that hangs up does not cancel it for the others
            pending = asyncio.ensure_future(self._verify(info, secret, key, checks))
            self._secret_checks[key] = pending
            pending.add_done_callback(lambda _: self._secret_checks.pop(key, None))
        return await asyncio.shield(pending)

    async def _verify(
        self,
        info: ClientInfo,
        secret: str,
        key: tuple[str, bytes],
        checks: deque[float],
    ) -> bool:
        async with self._checking:  # one scrypt at a time: a core stays free for the rest
            ok = await asyncio.to_thread(verify_secret, secret, info.secret_hash)
        if ok:
            if len(self._secrets) >= self.max_entries:
                self._secrets.clear()
            self._secrets[key] = time.monotonic() + self.ttl
            if checks:  # a right secret gives its place in the budget back
                checks.pop()
        return ok

    async def umami_client(self, website_id: str) -> ClientInfo | None:
        now = time.monotonic()
        hit = self._umami.get(website_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await asyncio.to_thread(load_umami_client, self.engine, website_id)
        if len(self._umami) >= self.max_entries:
            self._umami.clear()
        self._umami[website_id] = (now + self.ttl, info)
        return info

    async def site_clients(self, domain: str) -> list[str]:
        """Client ids of the projects a Plausible domain names: those naming it most
        specifically (by name before wildcard), the oldest project first."""
        now = time.monotonic()
        if self._sites_until <= now:
            self._sites = await asyncio.to_thread(load_sites, self.engine)
            self._sites_until = now + self.ttl
            self._domains.clear()
        found = self._domains.get(domain)
        if found is None:
            ranked = [(domain_rank(domain, origins), cid) for origins, cid in self._sites]
            best = max((rank for rank, _ in ranked), default=0)
            found = [cid for rank, cid in ranked if best and rank == best]
            if len(self._domains) >= self.max_entries:
                self._domains.clear()
            self._domains[domain] = found
        return found

    def forget(self) -> None:
        if self.on_forget is not None:
            self.on_forget()
        self.drop()

    def drop(self) -> None:
        """Forget this process's cache only."""
        self._clients.clear()
        self._secrets.clear()
        self._umami.clear()
        self._domains.clear()
        self._sites_until = 0.0
