"""Files → ClickHouse, bypassing the Redis buffer: `gatrix import`.

1. The files are cut into chunks (chunks.py) and hashed; the import's id comes from the
   project, the format, the chunk size and the files' contents.
2. Formats whose sessions the import decides (Umami, Segment) get a session pass first:
   workers read each record's visitor and time, the parent runs the 30-minute gap rule over
   all of them at once (sessions.py), since a visitor's events may lie in any chunk.
3. Workers parse and enrich chunks (every core); the parent gathers consecutive chunks
   into blocks of about BLOCK_EVENTS rows, inserts each block as one Arrow stream with the
   deduplication token `import:{id}:{first chunk}-{last chunk}:{table}`, then marks its
   chunks in the checkpoint. One block of 100k events goes in about twice as fast as the
   same rows in 5k-event blocks (each insert also writes a part per rollup). At most a few
   chunks wait to be inserted, so memory stays flat.

Idempotent and resumable: a finished import is recognised by its id and stores nothing; an
interrupted one skips the chunks its checkpoint names; any import skips the chunks an earlier
import stored into the project (the project's ledger), so the same file stores nothing twice
in whatever list of files it comes back. Blocks are cut from the first chunk
not yet done by the chunks' event counts alone, so a block inserted but not yet marked is
cut the same way again on resume and its token keeps it single.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa

from gatrix.clickhouse.store import Store
from gatrix.portability import work
from gatrix.portability.checkpoint import Checkpoint, Ledger, import_id, piece
from gatrix.portability.chunks import CHUNK_BYTES, Chunk, is_parquet, plan
from gatrix.portability.formats import get_format
from gatrix.portability.progress import Progress
from gatrix.portability.sessions import session_starts


@dataclass
class ImportReport:
    import_id: str
    events: int
    profiles: int
    dropped: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    already_done: bool = False
    seconds: float = 0.0
    others: dict[str, int] = field(default_factory=dict)  # table → identity links, counters
    # chunks skipped because an earlier import stored them into the project, and all chunks
    stored_before: int = 0
    chunks: int = 0


def _looks_csv(path: Path) -> bool:
    """Our own export is NDJSON (each line an object) or CSV (a header line)."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return not head.startswith(b"{")


def _pool_context() -> multiprocessing.context.BaseContext:
    # Workers come from a fresh server process, not a fork of this one: after chDB and
    # Arrow started their threads here, a forked child could inherit a held lock.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gatrix.portability.work"])
    return ctx


def _start_workers_server() -> None:
    """Start the server the workers are forked from, without waiting for it: it spends about
    half a second importing the workers' modules, which overlaps the hashing of the files
    instead of following it. Once running, it serves every later import of this process."""
    _pool_context()
    forkserver.ensure_running()


def _session_pass(
    pool: multiprocessing.pool.Pool, jobs: list[work.Job]
) -> dict[int, work.Sessions]:
    keyed = pool.map(work.keys, jobs, chunksize=1)
    lengths = [len(times) for _, _, times in keyed]
    visitors = np.concatenate([v for _, v, _ in keyed]) if keyed else np.empty(0, np.uint64)
    times = np.concatenate([t for _, _, t in keyed]) if keyed else np.empty(0, np.int64)
    starts = session_starts(visitors, times)
    out: dict[int, work.Sessions] = {}
    offset = 0
    for (number, _, _), length in zip(keyed, lengths, strict=True):
        end = offset + length
        out[number] = (visitors[offset:end], starts[offset:end])
        offset = end
    return out


BLOCK_EVENTS = 100_000
# chunks parsed ahead of the inserts (about a block's worth of 4 MB chunks, ~2 MB of Arrow each)
IN_FLIGHT = 16
# a Parquet row group is an export page (50,000 events, ~20 MB of Arrow): one or two ahead
# keep the workers busy, more only grow the parent's memory
IN_FLIGHT_GROUPS = 2


@dataclass
class Block:
    """Worker results of consecutive chunks waiting to go in as one insert."""

    results: list[work.Result] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(r.event_count for r in self.results)

    @property
    def rows(self) -> int:
        return sum(
            r.event_count + r.profile_count + sum(r.other_counts.values()) for r in self.results
        )

    def token(self, iid: str, table: str) -> str:
        return f"import:{iid}:{self.results[0].number}-{self.results[-1].number}:{table}"


def _rows(args: tuple[work.Job, work.Sessions | None]) -> work.Result:
    return work.rows(*args)


def run_import(
    store: Store,
    state_dir: Path,
    project_id: str,
    fmt_name: str,
    paths: list[Path],
    *,
    geoip_path: str = "",
    workers: int | None = None,
    stop_after: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    block_events: int = BLOCK_EVENTS,
    out: TextIO | None = None,
) -> ImportReport:
    """Import `paths` into `project_id`. `stop_after`: stop (resumably) once at least that
    many events are in, as an interruption would. `block_events`: events per insert."""
    parquet = [p for p in paths if is_parquet(p)]
    if parquet and fmt_name != "gatrix":
        raise ValueError(f"{parquet[0].name} is Parquet: only our own export is read as Parquet")
    text = [p for p in paths if p not in parquet]
    csv_file = fmt_name == "gatrix" and bool(text) and _looks_csv(text[0])
    fmt = get_format(fmt_name, csv_file)
    _start_workers_server()
    chunks = plan(paths, fmt.csv, chunk_bytes)
    hashes = list(dict.fromkeys(c.file_hash for c in chunks))
    iid = import_id(project_id, f"{fmt_name}:{chunk_bytes}", hashes)
    # one import into a project at a time: two running side by side could both find a file
    # not yet in the ledger and store it twice
    with Ledger.held(state_dir, project_id, out or sys.stderr) as ledger:
        checkpoint = Checkpoint.open(state_dir, iid)
        if checkpoint.complete:
            return ImportReport(
                iid,
                checkpoint.events,
                checkpoint.profiles,
                checkpoint.dropped,
                True,
                True,
                others=checkpoint.others,
            )
        stored_before = _stored_before(chunks, fmt_name, checkpoint, ledger)
        done = checkpoint.done | stored_before
        workers = workers or os.cpu_count() or 1
        jobs = [work.Job(fmt_name, csv_file, project_id, geoip_path, c) for c in chunks]
        # stderr as it is now (not as it was at import time: it may have been replaced since)
        progress = Progress(sum(c.end - c.start for c in chunks), out or sys.stderr)
        for job in jobs:
            if job.chunk.number in done:
                progress.advance(job.chunk.end - job.chunk.start, 0)

        def commit(block: Block) -> int:
            return _commit(store, iid, block, checkpoint, ledger, fmt_name, chunks)

        with _pool_context().Pool(workers) as pool:
            starts = _session_pass(pool, jobs) if fmt.sessions else {}
            todo = deque(j for j in jobs if j.chunk.number not in done)
            stopped = _write_blocks(
                pool, todo, starts, workers, commit, progress, stop_after, block_events
            )
            checkpoint.complete = not stopped or len(checkpoint.done | stored_before) == len(chunks)
            checkpoint.save()
        seconds = progress.finish()
        return ImportReport(
            iid,
            checkpoint.events,
            checkpoint.profiles,
            checkpoint.dropped,
            checkpoint.complete,
            False,
            seconds,
            checkpoint.others,
            len(stored_before),
            len(chunks),
        )


def _write_blocks(
    pool: multiprocessing.pool.Pool,
    todo: deque[work.Job],
    starts: dict[int, work.Sessions],
    workers: int,
    commit: Callable[[Block], int],
    progress: Progress,
    stop_after: int | None,
    block_events: int,
) -> bool:
    """Parse the chunks of `todo` in the workers and `commit` them in blocks of about
    `block_events` rows, in order; True when it stopped early (`stop_after` events in)."""
    written = 0
    pending: deque[tuple[Chunk, AsyncResult]] = deque()
    block, block_bytes = Block(), 0
    while todo or pending:
        # enough chunks in flight that workers keep parsing while the parent inserts a block;
        # bounded, so the parent's memory stays flat
        ahead = IN_FLIGHT_GROUPS if todo and todo[0].chunk.group >= 0 else IN_FLIGHT
        while todo and len(pending) < workers + ahead:
            job = todo.popleft()
            pending.append(
                (job.chunk, pool.apply_async(_rows, ((job, starts.get(job.chunk.number)),)))
            )
        chunk, waiting = pending.popleft()
        block.results.append(waiting.get())
        block_bytes += chunk.end - chunk.start
        if block.rows < block_events and (todo or pending):
            continue
        written += commit(block)
        progress.advance(block_bytes, block.events)
        block, block_bytes = Block(), 0
        if stop_after is not None and written >= stop_after:
            # what is already parsed is dropped, not inserted: a resume cuts it again
            return True
    return False


def _stored_before(
    chunks: list[Chunk], fmt_name: str, checkpoint: Checkpoint, ledger: Ledger
) -> set[int]:
    """Chunks not to store: stored by an earlier import into the project, or a repeat of one
    earlier in this import (the same file given twice)."""
    seen: set[str] = set()
    skip: set[int] = set()
    for chunk in chunks:
        name = piece(fmt_name, chunk)
        if chunk.number not in checkpoint.done and (name in ledger.pieces or name in seen):
            skip.add(chunk.number)
        seen.add(name)
    return skip


def _commit(
    store: Store,
    iid: str,
    block: Block,
    checkpoint: Checkpoint,
    ledger: Ledger,
    fmt_name: str,
    chunks: list[Chunk],
) -> int:
    """Insert one block, then mark its chunks done (the project's ledger first, see
    checkpoint.py); the events it stored."""
    _insert(store, block.token(iid, "events"), [r.events for r in block.results], "events")
    _insert(store, block.token(iid, "profiles"), [r.profiles for r in block.results], "profiles")
    for table in sorted({t for r in block.results for t in r.others}):
        streams = [r.others.get(table, b"") for r in block.results]
        _insert(store, block.token(iid, table), streams, table)
    ledger.add(piece(fmt_name, chunks[r.number]) for r in block.results)
    for result in block.results:
        for table, count in result.other_counts.items():
            checkpoint.others[table] = checkpoint.others.get(table, 0) + count
        checkpoint.done.add(result.number)
        checkpoint.events += result.event_count
        checkpoint.profiles += result.profile_count
        for reason, count in result.dropped.items():
            checkpoint.dropped[reason] = checkpoint.dropped.get(reason, 0) + count
    checkpoint.save()
    return block.events


def _insert(store: Store, token: str, streams: list[bytes], table: str) -> None:
    streams = [s for s in streams if s]
    if not streams:
        return
    if len(streams) > 1:
        tables = [pa.ipc.open_stream(s).read_all() for s in streams]
        streams = [work.ipc_table(pa.concat_tables(tables))]
    store.insert_arrow(table, streams[0], token)
