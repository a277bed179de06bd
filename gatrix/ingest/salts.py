"""Cookieless visitor ids and the 30-minute session rule.

visitor id = hash(daily salt, project, IP, user agent). Salts are random per UTC day and kept
in the metadata database so every process agrees; the previous day's salt is kept so a visit
that crosses midnight keeps its visitor (the buffer's Lua call looks up both). A device id or
profile id sent by the client overrides the hash.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gatrix.meta.models import Salt

SESSION_TIMEOUT_MS = 30 * 60 * 1000


def visitor_id(salt: bytes, project_id: str, ip: str, user_agent: str) -> str:
    digest = blake2b(digest_size=8, key=salt[:64])
    digest.update(project_id.encode())
    digest.update(b"\x00")
    digest.update(ip.encode())
    digest.update(b"\x00")
    digest.update(user_agent.encode("utf-8", "replace"))
    return digest.hexdigest()


class SaltBook:
    """Today's and yesterday's salts, kept in memory and created ahead of time in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._salts: dict[date, bytes] = {}
        # a visitor sends several events: hash once per (day, project, IP, UA)
        self._ids_for_day = lru_cache(maxsize=65536)(self._ids_uncached)

    def ensure(self, today: date) -> None:
        """Load or create the salts for yesterday, today and tomorrow (blocking: call off-loop)."""
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            if day not in self._salts:
                self._salts[day] = self._load_or_create(day)
        for day in [d for d in self._salts if d < today - timedelta(days=1)]:
            del self._salts[day]  # forgetting old salts is what makes old ids unlinkable

    def _load_or_create(self, day: date) -> bytes:
        with Session(self.engine) as db:
            row = db.exec(select(Salt).where(Salt.day == day)).first()
            if row is None:
                db.add(Salt(day=day, value=secrets.token_hex(32)))
                try:
                    db.commit()
                except IntegrityError:  # another process created it first
                    db.rollback()
                row = db.exec(select(Salt).where(Salt.day == day)).one()
            return bytes.fromhex(row.value)

    def pair(self, now: datetime) -> tuple[bytes, bytes]:
        today = now.astimezone(UTC).date()
        if today not in self._salts:
            self.ensure(today)
        return self._salts[today], self._salts[today - timedelta(days=1)]

    def ids_at(self, ms: int, project_id: str, ip: str, user_agent: str) -> tuple[str, str]:
        """`ids` for an epoch-millisecond time (the request path's cheap, cached form)."""
        return self._ids_for_day(ms // 86_400_000, project_id, ip, user_agent)

    def _ids_uncached(self, day: int, project_id: str, ip: str, user_agent: str) -> tuple[str, str]:
        current, previous = self.pair(datetime.fromtimestamp(day * 86_400, UTC))
        return (
            visitor_id(current, project_id, ip, user_agent),
            visitor_id(previous, project_id, ip, user_agent),
        )

    def ids(self, now: datetime, project_id: str, ip: str, user_agent: str) -> tuple[str, str]:
        """(today's visitor id, yesterday's) for a visitor at `now`."""
        return self.ids_at(int(now.timestamp() * 1000), project_id, ip, user_agent)
