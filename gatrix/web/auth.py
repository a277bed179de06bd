"""Browser sessions, CSRF protection and login throttling.

- Sessions are random tokens in an HttpOnly, SameSite=Lax cookie (Secure over https), mapped
  to a user id in Redis for 14 days; logging out deletes the mapping.
- CSRF uses a double-submit token: a random `gatrix_csrf` cookie whose value every form
  (hidden `_csrf` field) and every HTMX request (`X-CSRF-Token` header) must repeat. Another
  site can make a browser send the cookie but cannot read it to repeat it.
- Failed logins are counted per account and per client IP in Redis; over the limit, logins
  are refused for the rest of the window whatever the password.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from redis.asyncio import Redis

SESSION_COOKIE = "gatrix_session"
CSRF_COOKIE = "gatrix_csrf"
SESSION_TTL_S = 14 * 86400
THROTTLE_WINDOW_S = 15 * 60
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20


@dataclass
class WebAuth:
    redis: Redis
    prefix: str

    def _key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:{kind}:{value}"

    # --- sessions

    async def start_session(self, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        await self.redis.set(self._key("web", token), str(user_id), ex=SESSION_TTL_S)
        return token

    async def session_user_id(self, request: Request) -> int | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or len(token) > 100:
            return None
        value = await self.redis.get(self._key("web", token))
        return int(value) if value else None

    async def end_session(self, request: Request) -> None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            await self.redis.delete(self._key("web", token))

    # --- throttling

    async def throttled(self, email: str, ip: str) -> bool:
        account, address = await self.redis.mget(
            self._key("loginfail:acct", email.lower()), self._key("loginfail:ip", ip)
        )
        return (
            int(account or 0) >= MAX_FAILURES_PER_ACCOUNT
            or int(address or 0) >= MAX_FAILURES_PER_IP
        )

    async def record_failure(self, email: str, ip: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (self._key("loginfail:acct", email.lower()), self._key("loginfail:ip", ip)):
                pipe.incr(key)
                pipe.expire(key, THROTTLE_WINDOW_S, nx=True)
            await pipe.execute()

    async def clear_failures(self, email: str) -> None:
        await self.redis.delete(self._key("loginfail:acct", email.lower()))


def csrf_token(request: Request) -> str:
    """The visitor's CSRF token (a new one when the cookie is missing)."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(existing) <= 100:
        return existing
    token = request.scope.get("state", {}).get("new_csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.scope.setdefault("state", {})["new_csrf"] = token
    return token


def csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str(form.get("_csrf") or request.headers.get("x-csrf-token") or "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _cookie(key: str, value: str, request: Request, max_age: int, samesite: str) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        httponly=True,
        samesite=samesite,  # type: ignore[arg-type]
        secure=is_https(request),
        max_age=max_age,
        path="/",
    )


def session_cookie(token: str, request: Request) -> Cookie:
    return _cookie(SESSION_COOKIE, token, request, SESSION_TTL_S, "lax")


def clear_session_cookie(request: Request) -> Cookie:
    return _cookie(SESSION_COOKIE, "", request, 0, "lax")


def csrf_cookie(token: str, request: Request) -> Cookie:
    return _cookie(CSRF_COOKIE, token, request, SESSION_TTL_S, "strict")
