"""Attempt counters in Redis that lock a guessable action (a login, a share-link password)
for a window once any of its subjects (the account, the link, the client IP) used up its
allowance, whatever the later guesses are."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from gatrix.buffer.keys import RedisKeys


def address_subject(ip: str) -> str:
    """The throttle's unit for a client address: one IPv4 address, or an IPv6 /64, since one
    subscriber commonly holds a whole /64 and could rotate through it guess by guess."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class Throttle:
    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        action: str,
        limits: Mapping[str, int],
        window_s: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.action = action
        self.limits = dict(limits)
        self.window_s = window_s

    def _key(self, scope: str, value: str) -> str:
        return self.keys.throttle(self.action, scope, value)

    async def attempt(self, subjects: Mapping[str, str]) -> bool:
        """Count one attempt for every subject; False when any is over its limit.

        The attempt is counted before the guess is checked, not after it failed: otherwise
        parallel requests all pass the check before any of them is counted.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope, value in subjects.items():
                key = self._key(scope, value)
                pipe.incr(key)
                pipe.expire(key, self.window_s, nx=True)  # the window runs from the first one
            replies = await pipe.execute()
        counts = replies[::2]
        return all(
            int(count) <= self.limits[scope] for scope, count in zip(subjects, counts, strict=True)
        )

    async def succeeded(self, subjects: Mapping[str, str], forget: Iterable[str] = ()) -> None:
        """The attempt was right, so it does not count; the `forget` scopes start over."""
        forget = set(forget)
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope, value in subjects.items():
                key = self._key(scope, value)
                if scope in forget:
                    pipe.delete(key)
                else:
                    pipe.decr(key)
                    # the key may have expired meanwhile: never leave a counter without its end
                    pipe.expire(key, self.window_s, nx=True)
            await pipe.execute()
