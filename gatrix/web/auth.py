"""Browser sessions, CSRF protection, login throttling and the client's address.

- Sessions are random tokens in an HttpOnly, SameSite=Lax cookie, mapped to a user id in Redis
  for 14 days; logging out deletes the mapping.
- Every cookie is built here: Secure when the browser reached us over https (directly, per a
  trusted proxy's X-Forwarded-Proto, or always when GATRIX_PUBLIC_URL is https), and scoped
  to GATRIX_ROOT_PATH, so under a prefix our cookies never reach the rest of the site.
- CSRF: with a session, the token is an HMAC keyed by the session token, so it is worthless
  in any other session and a token planted before login stops working at login. The session
  token is 256 random bits that never leave the HttpOnly cookie: a server-wide key would add
  nothing, and not needing one keeps every process of a deployment in agreement without
  shared state. Without a session (setup, login, share unlock) it is a double-submit token: a
  random `gatrix_csrf` cookie that the form must repeat. Forms send it as the hidden `_csrf`
  field, scripts as the `X-CSRF-Token` header.
- Failed logins are counted per account and per client IP (through the trusted-proxy rule);
  over the limit, logins are refused for the rest of the window whatever the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from redis.asyncio import Redis
from sqlalchemy.engine import Engine

from gatrix.buffer.keys import (
    SHARE_UNLOCK_TTL_S,
    THROTTLE_WINDOW_S,
    WEB_SESSION_TTL_S,
    RedisKeys,
)
from gatrix.ingest.routes import TrustedProxies
from gatrix.meta import accounts
from gatrix.meta.accounts import UserInfo, normalize_email
from gatrix.meta.projects import verify_secret
from gatrix.settings import Settings
from gatrix.web.throttle import Throttle, address_subject

SESSION_COOKIE = "gatrix_session"
CSRF_COOKIE = "gatrix_csrf"
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20
MAX_SHARE_FAILURES_PER_LINK = 10
MAX_SHARE_FAILURES_PER_IP = 20
_CSRF_LABEL = b"gatrix csrf v1"


class Throttled(Exception):
    """Too many recent failures for this account, link or address."""


@dataclass
class WebAuth:
    redis: Redis
    keys: RedisKeys
    logins: Throttle = field(init=False)
    share_unlocks: Throttle = field(init=False)

    def __post_init__(self) -> None:
        self.logins = Throttle(
            self.redis,
            self.keys,
            "login",
            {"acct": MAX_FAILURES_PER_ACCOUNT, "ip": MAX_FAILURES_PER_IP},
            THROTTLE_WINDOW_S,
        )
        self.share_unlocks = Throttle(
            self.redis,
            self.keys,
            "share",
            {"link": MAX_SHARE_FAILURES_PER_LINK, "ip": MAX_SHARE_FAILURES_PER_IP},
            THROTTLE_WINDOW_S,
        )

    # --- sessions

    async def start_session(self, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        await self.redis.set(self.keys.web_session(token), str(user_id), ex=WEB_SESSION_TTL_S)
        return token

    async def session_user_id(self, request: Request) -> int | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or len(token) > 100:
            return None
        value = await self.redis.get(self.keys.web_session(token))
        return int(value) if value else None

    async def end_session(self, request: Request) -> None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            await self.redis.delete(self.keys.web_session(token))

    # --- logging in

    async def log_in(self, engine: Engine, email: str, password: str, ip: str) -> UserInfo | None:
        """The user these credentials name, None when they are wrong; raises Throttled when
        the account or the address is locked, before the password is even checked."""
        subjects = {"acct": normalize_email(email), "ip": address_subject(ip)}
        if not await self.logins.attempt(subjects):
            raise Throttled
        user = await asyncio.to_thread(accounts.authenticate, engine, email, password)
        if user is not None:
            await self.logins.succeeded(subjects, forget=("acct",))
        return user

    async def unlock_share(self, token: str, password_hash: str, password: str, ip: str) -> bool:
        """Whether `password` opens the share link; raises Throttled like `log_in`."""
        subjects = {"link": token, "ip": address_subject(ip)}
        if not await self.share_unlocks.attempt(subjects):
            raise Throttled
        ok = await asyncio.to_thread(verify_secret, password, password_hash)
        if ok:
            # the link's count stays: a visitor who knows the password must not reset the
            # allowance of someone guessing it
            await self.share_unlocks.succeeded({"ip": subjects["ip"]})
        return ok


def _session_bound(session: str) -> str:
    return hmac.new(session.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token forms must repeat: bound to the session when there is one, else the
    double-submit cookie's (a new one when the cookie is missing)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if session:
        return _session_bound(session)
    existing = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(existing) <= 100:
        return existing
    token = request.scope.get("state", {}).get("new_csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.scope.setdefault("state", {})["new_csrf"] = token
    return token


def new_csrf_cookie(request: Request) -> str:
    """The double-submit token this response must set as a cookie; empty when none is due."""
    if request.cookies.get(SESSION_COOKIE):
        return ""  # the session's token needs no cookie of its own
    token = csrf_token(request)
    return "" if request.cookies.get(CSRF_COOKIE) == token else token


def csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    sent = str(form.get("_csrf") or request.headers.get("x-csrf-token") or "")
    session = request.cookies.get(SESSION_COOKIE, "")
    # with a session cookie only the session's own token counts, never the double-submit
    # cookie: that one may have been planted (from a sibling subdomain) before login
    expected = _session_bound(session) if session else request.cookies.get(CSRF_COOKIE, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), sent.encode())


def metrics_authorized(authorization: str, settings: Settings) -> bool:
    """Open when GATRIX_METRICS_TOKEN is unset; else the exact bearer token, compared in
    constant time so the reply's timing does not reveal how much of a guess was right."""
    if not settings.metrics_token:
        return True
    scheme, _, sent = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), settings.metrics_token.encode()
    )


@lru_cache(maxsize=8)
def _proxies(cidrs: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))


def client_ip(request: Request) -> str:
    """The browser's address by the same rule as ingestion (GATRIX_TRUSTED_PROXIES): behind a
    proxy the TCP peer is the proxy, and throttling by it would lock out everyone at once."""
    peer = request.client.host if request.client else ""
    proxies = _proxies(tuple(request.app.state.settings.trusted_proxies))
    # a second X-Forwarded-For line is legal HTTP; joined, the rightmost-hop walk still holds
    forwarded = ", ".join(request.headers.getall("x-forwarded-for", []))
    return proxies.client_ip(peer, forwarded, request.headers.get("x-real-ip", ""))


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https: the public URL says so, or the connection
    does, or a trusted proxy's X-Forwarded-Proto does (anyone else's is ignored)."""
    settings = request.app.state.settings
    if settings.public_url.lower().startswith("https://"):
        return True
    # from the ASGI scope: building request.url parses the Host header, which a client controls
    if request.scope.get("scheme") == "https":
        return True
    peer = request.client.host if request.client else ""
    proxies = _proxies(tuple(settings.trusted_proxies))
    if not proxies.cidrs or not proxies.trusted(peer):
        return False
    # a chain of proxies may list one scheme per hop; any https hop means the browser's leg
    # may carry a Secure cookie (a wrong "https" only keeps the cookie from plain http)
    sent = ",".join(request.headers.getall("x-forwarded-proto", []))
    return "https" in {part.strip().lower() for part in sent.split(",")}


def scheme(request: Request) -> str:
    return "https" if is_https(request) else "http"


def _cookie(
    key: str, value: str, request: Request, max_age: int, samesite: str, path: str = "/"
) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        httponly=True,
        samesite=samesite,  # type: ignore[arg-type]
        secure=is_https(request),
        max_age=max_age,
        # the browser sees our paths under the prefix (the Gatrix platform proxies us under
        # /api/v1/analytics): a cookie for "/" would go to every app on that host
        path=request.app.state.settings.root_path + path,
    )


def session_cookie(token: str, request: Request) -> Cookie:
    return _cookie(SESSION_COOKIE, token, request, WEB_SESSION_TTL_S, "lax")


def clear_session_cookie(request: Request) -> Cookie:
    return _cookie(SESSION_COOKIE, "", request, 0, "lax")


def csrf_cookie(token: str, request: Request) -> Cookie:
    return _cookie(CSRF_COOKIE, token, request, WEB_SESSION_TTL_S, "strict")


def share_cookie(name: str, key: str, token: str, request: Request) -> Cookie:
    """A share link's unlock cookie, sent back only under that link's own path."""
    return _cookie(name, key, request, SHARE_UNLOCK_TTL_S, "lax", f"/share/{token}")
