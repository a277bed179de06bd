"""The `/track/batch` phase: a fixed number of events posted in full batches, then drained.

It answers two questions the single-event run cannot: how fast the server accepts events when
request overhead is amortised, and how long until all of them are queryable in ClickHouse.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tools.bench.payloads import BATCH_SIZE, HOST, batch_body, headers
from tools.bench.processes import wait_drained

BATCH_CLIENTS = 4


@dataclass
class BatchState:
    target: int
    accepted: int = 0
    in_flight: int = 0
    rejected: int = 0
    dropped: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    first_send: float = 0.0
    last_reply: float = 0.0


async def _batch_load(port: int, client_id: str, target: int, deadline: float) -> BatchState:
    import httpx

    # Encoded before the clock starts, so the client's JSON work does not count against the
    # server; a handful of distinct bodies is enough to vary the paths.
    full = [batch_body(BATCH_SIZE, seed) for seed in range(8)]
    state = BatchState(target=target)
    url = f"http://{HOST}:{port}/track/batch"
    request_headers = headers(client_id)

    async def client(worker: int) -> None:
        seq = worker
        async with httpx.AsyncClient(timeout=60.0) as http:
            # Reserve before sending so the clients together stop at the target, not past it.
            while state.accepted + state.in_flight < target and time.perf_counter() < deadline:
                if len(state.failures) > 20:
                    return
                size = min(BATCH_SIZE, target - state.accepted - state.in_flight)
                body = full[seq % len(full)] if size == BATCH_SIZE else batch_body(size, seq)
                seq += BATCH_CLIENTS
                state.in_flight += size
                try:
                    resp = await http.post(url, content=body, headers=request_headers)
                    state.requests += 1
                    if resp.status_code != 200:
                        state.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                        continue
                    reply = resp.json()
                    state.accepted += int(reply.get("accepted", 0))
                    state.rejected += int(reply.get("rejected", 0))
                    state.dropped += int(reply.get("dropped", 0))
                    state.last_reply = time.perf_counter()
                except (httpx.HTTPError, ValueError) as exc:
                    state.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    await asyncio.sleep(0.2)
                finally:
                    state.in_flight -= size

    state.first_send = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(BATCH_CLIENTS)))
    return state


def batch_phase(port: int, client_id: str, target: int) -> dict[str, Any]:
    # Generous but finite: even 5k events/s finishes a million-event run well within it.
    http_budget = max(60.0, target / 5000)
    state = asyncio.run(_batch_load(port, client_id, target, time.perf_counter() + http_budget))
    drain_s, health = wait_drained(port)
    # wait_drained returns as soon as it sees the buffer empty, so "now" is when the last
    # accepted event became queryable (to within one poll).
    total_s = time.perf_counter() - state.first_send if drain_s is not None else None
    http_s = max(state.last_reply - state.first_send, 1e-9)
    return {
        "events": state.accepted,
        "requests": state.requests,
        "rejected": state.rejected,
        "dropped": state.dropped,
        "http_seconds": round(http_s, 3),
        "http_events_per_s": round(state.accepted / http_s, 1) if state.accepted else 0.0,
        "seconds_until_queryable": round(total_s, 3) if total_s is not None else None,
        "into_clickhouse_events_per_s": (
            round(state.accepted / total_s, 1) if total_s and state.accepted else None
        ),
        "failures": state.failures[:5],
        "health_after": health,
    }
