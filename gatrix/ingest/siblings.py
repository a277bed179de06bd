"""What the processes of one server tell each other through Redis.

- **Client changes**: an admin page that changes a project's origins, secret or exclusions
  forgets the primary's client cache at once; it also bumps a generation number, and every
  ingest process forgets its own cache within a second of seeing it change (otherwise a
  rotated secret would still be accepted for the cache's lifetime in the other processes).
- **Figures for /metrics**: each ingest process writes its request histograms and ingest
  outcome counts every second under a key that expires, and the primary adds them up, so one
  scrape describes the whole server and a dead process's figures age out. Reports are keyed
  by the primary's host and pid: servers on several machines may share one Redis, and each
  machine's /metrics must count only its own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from typing import Any

import msgspec
from redis.asyncio import Redis

from gatrix.buffer.keys import RedisKeys
from gatrix.ingest.counters import IngestCounters
from gatrix.meta.projects import Directory
from gatrix.metrics import Histogram, RequestMetrics

log = logging.getLogger("gatrix.processes")
REPORT_EVERY_S = 1.0
# a report older than this belongs to a process that stopped
REPORT_TTL_S = 10


class Report(msgspec.Struct):
    """One ingest process's figures since it started."""

    index: int
    pid: int
    requests: list[tuple[str, str, list[int], float]]  # group, status class, counts, total
    outcomes: list[tuple[str, str, int]]  # project, outcome, events


def report_of(index: int, metrics: RequestMetrics, counters: IngestCounters) -> Report:
    return Report(
        index=index,
        pid=os.getpid(),
        requests=[(g, c, list(h.counts), h.total) for (g, c), h in metrics.by_group.items()],
        outcomes=[(p, o, n) for (p, o), n in counters.totals.items()],
    )


async def announce_change(redis: Redis, keys: RedisKeys) -> None:
    with contextlib.suppress(Exception):  # the primary already forgot; the rest follows TTL
        await redis.incr(keys.directory_generation)


def server_tag() -> str:
    """Names this server (the primary process) among the servers sharing a Redis."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def keep_in_touch(
    redis: Redis,
    keys: RedisKeys,
    server: str,
    index: int,
    directory: Directory,
    metrics: RequestMetrics,
    counters: IngestCounters,
) -> None:
    """An ingest process's loop: publish figures, follow the primary's client changes."""
    unread = object()  # the generation may not exist yet (None): that is a value too
    seen: object = unread
    encode = msgspec.json.encode
    while True:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.get(keys.directory_generation)
                pipe.set(
                    f"{keys.process_report}{server}:{index}",
                    encode(report_of(index, metrics, counters)),
                    ex=REPORT_TTL_S,
                )
                generation, _ = await pipe.execute()
            if seen is not unread and generation != seen:
                directory.drop()
            seen = generation
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis restarting: figures wait, the cache keeps its TTL
            log.debug("could not reach Redis: %s", exc)
        await asyncio.sleep(REPORT_EVERY_S)


async def read_reports(redis: Redis, keys: RedisKeys, server: str, count: int) -> list[Report]:
    """The live reports of this server's ingest processes 1..count (exact keys: a SCAN would
    walk every visitor session in the keyspace)."""
    reports: list[Report] = []
    with contextlib.suppress(Exception):
        names = [f"{keys.process_report}{server}:{i}" for i in range(1, count + 1)]
        if names:
            decode = msgspec.json.Decoder(Report).decode
            for raw in await redis.mget(names):
                if raw:
                    with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                        reports.append(decode(raw))
    return sorted(reports, key=lambda r: r.index)


def add_up(
    own: RequestMetrics, own_outcomes: Counter[tuple[str, str]], reports: list[Report]
) -> tuple[RequestMetrics, Counter[tuple[str, str]]]:
    """The primary's figures plus every ingest process's, as fresh objects."""
    total = RequestMetrics()
    for key, histogram in own.by_group.items():
        _add(total.by_group[key], histogram.counts, histogram.total)
    outcomes: Counter[tuple[str, str]] = Counter(own_outcomes)
    for report in reports:
        for group, status, counts, seconds in report.requests:
            _add(total.by_group[(group, status)], counts, seconds)
        for project, outcome, n in report.outcomes:
            outcomes[(project, outcome)] += n
    return total, outcomes


def _add(into: Histogram, counts: list[Any], seconds: float) -> None:
    if len(counts) != len(into.counts):
        return  # another version's buckets: leave them out rather than misplace them
    for i, n in enumerate(counts):
        into.counts[i] += int(n)
    into.n += sum(int(n) for n in counts)
    into.total += seconds
