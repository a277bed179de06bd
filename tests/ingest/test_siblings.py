"""What the processes of one server tell each other: cache changes, figures, the peer address
a forwarded request carries. Real Redis; the processes are played by tasks in this one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatrix.buffer.keys import RedisKeys
from gatrix.ingest.counters import IngestCounters
from gatrix.ingest.forward import PEER_HEADER, peer_from_primary_socket
from gatrix.ingest.siblings import add_up, announce_change, keep_in_touch, read_reports
from gatrix.meta.projects import MAX_SECRET_FAILURES, ClientInfo, Directory, failure_share
from gatrix.metrics import RequestMetrics


async def _until(check: Any, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_client_change_empties_the_other_processes_caches(
    redis: Any, prefix: str, sql_engine: Any
) -> None:
    keys = RedisKeys(prefix)
    directory = Directory(sql_engine)
    info = ClientInfo.__new__(ClientInfo)  # a cached entry; its content does not matter here
    metrics = RequestMetrics()
    counters = IngestCounters(redis, keys)
    task = asyncio.create_task(
        keep_in_touch(redis, keys, "host:1", 1, directory, metrics, counters)
    )
    try:
        await asyncio.sleep(0.3)  # the loop has read the current generation
        directory._clients["cid"] = (1e18, info)
        await asyncio.sleep(1.2)
        assert "cid" in directory._clients  # nothing changed: the cache stays
        await announce_change(redis, keys)
        assert await _until(lambda: "cid" not in directory._clients)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_primary_adds_up_its_ingest_processes_figures(redis: Any, prefix: str) -> None:
    keys = RedisKeys(prefix)
    own = RequestMetrics()
    own.observe("track", 200, 0.002)
    own_outcomes = IngestCounters(redis, keys)
    own_outcomes.count("p1", "accepted", 3)

    theirs = RequestMetrics()
    for _ in range(5):
        theirs.observe("track", 200, 0.004)
    their_counts = IngestCounters(redis, keys)
    their_counts.count("p1", "accepted", 5)
    their_counts.count("p1", "invalid_payload")
    directory = Directory.__new__(Directory)
    task = asyncio.create_task(
        keep_in_touch(redis, keys, "host:1", 1, directory, theirs, their_counts)
    )
    try:
        await asyncio.sleep(0.5)  # its first report is written at once
        reports = await read_reports(redis, keys, "host:1", 1)
        # another server's processes on the same Redis are not ours to count
        assert await read_reports(redis, keys, "host:2", 1) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.index for r in reports] == [1]
    requests, outcomes = add_up(own, own_outcomes.totals, reports)
    track = requests.by_group[("track", "2xx")]
    assert track.n == 6 and sum(track.counts) == 6
    assert outcomes[("p1", "accepted")] == 8 and outcomes[("p1", "invalid_payload")] == 1


def _scope(server: tuple[str, int | None], peer: bytes | None) -> dict:
    headers = [(b"host", b"example.com")]
    if peer is not None:
        headers.append((PEER_HEADER, peer))
    return {"type": "http", "server": server, "client": ("10.0.0.9", 5000), "headers": headers}


@pytest.mark.fast
def test_the_peer_header_is_believed_only_on_the_private_socket() -> None:
    private = "/run/gatrix-x/primary.sock"
    forwarded = peer_from_primary_socket(_scope((private, None), b"203.0.113.7 41000"), private)
    assert forwarded["client"] == ("203.0.113.7", 41000)
    assert all(name != PEER_HEADER for name, _ in forwarded["headers"])
    # the same header from the internet is a claim: the TCP peer stays
    public = _scope(("127.0.0.1", 3002), b"203.0.113.7 41000")
    assert peer_from_primary_socket(public, private)["client"] == ("10.0.0.9", 5000)
    # a single-process server has no private socket at all
    assert peer_from_primary_socket(public, "")["client"] == ("10.0.0.9", 5000)
    # on the private socket without the header: no peer rather than the socket's own
    assert peer_from_primary_socket(_scope((private, None), None), private)["client"] is None


@pytest.mark.fast
def test_each_process_allows_its_share_of_the_wrong_secret_budget() -> None:
    assert failure_share(1) == MAX_SECRET_FAILURES
    assert failure_share(2) * 2 <= MAX_SECRET_FAILURES
    assert failure_share(8) * 8 <= MAX_SECRET_FAILURES and failure_share(64) == 1
