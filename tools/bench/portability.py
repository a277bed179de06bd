"""`python -m tools.bench export | import`: raw export throughput and flat memory, and import
speed end to end (files → parse and enrich in worker processes → ClickHouse).

Datasets come from the insights benchmark's generator (INSERT … SELECT inside ClickHouse).
`export` writes every format of the whole range to a file and samples this process's RSS
while it runs. `import` exports the dataset as NDJSON, then imports it into a fresh project
(`--format gatrix`), and also imports a Segment file of the same size written from it
(`--format segment`: user agents, URLs, referrers and IPs to enrich) and an Umami CSV export
of it (`--format umami`: browser, OS and country names as Umami keeps them, a page URL and
referrer to parse). `events_per_s` counts
from the start of the parse (after the files are hashed and cut into chunks) to the last
insert, as the import's own progress line does; `events_per_s_wall` counts the whole call.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from gatrix.clickhouse.store import Store
from gatrix.insights.query import QueryParams, build_query
from gatrix.portability.export import export
from gatrix.portability.importer import run_import
from tools.bench.insights import PROJECT, generate, settle

UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; rv:128.0) Gecko/20100101 Firefox/128.0",
)


def _rss_mb(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:  # the process ended meanwhile
        pass
    return 0


def _descendants(root: int) -> list[int]:
    """Every process below `root` (the import's workers are forked from a fork server that
    this process started: grandchildren, which `RUSAGE_CHILDREN` never sees)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the parent pid is the field after the ")" that closes the command name
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class RssSampler:
    """Peak resident memory while a block runs: this process (every 50 ms), and the sum over
    its descendant processes (every 250 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self.descendants_peak = 0
        self._stop = threading.Event()

    @staticmethod
    def now_mb() -> int:
        return _rss_mb()

    def __enter__(self) -> RssSampler:
        self.start = self.now_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        me, tick = os.getpid(), 0
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now_mb())
            tick += 1
            if tick % 5 == 0:
                total = sum(_rss_mb(pid) for pid in _descendants(me))
                self.descendants_peak = max(self.descendants_peak, total)

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _dataset(data_dir: Path, events: int, now: datetime) -> Store:
    store = Store(f"chdb://{data_dir / 'clickhouse'}", f"bench_port_{events}")
    store.command(f"DROP DATABASE IF EXISTS {store.db}")
    store.migrate()
    seconds = generate(store, events, now)
    settle(store)
    _say(f"{events:,} events generated in {seconds:.1f} s")
    return store


def _export_file(store: Store, fmt: str, path: Path, now: datetime) -> dict[str, Any]:
    q = build_query(PROJECT, "UTC", QueryParams(range="all"), now)
    started = time.perf_counter()
    size = 0
    with RssSampler() as rss, path.open("wb") as out:
        for part in export(store, q, fmt):
            out.write(part)
            size += len(part)
    seconds = time.perf_counter() - started
    result = {
        "seconds": round(seconds, 1),
        "mb": round(size / 1e6, 1),
        "mb_per_s": round(size / 1e6 / seconds, 1),
        "rss_start_mb": rss.start,
        "rss_peak_mb": rss.peak,
    }
    _say(f"  export {fmt:<8} {json.dumps(result)}")
    return result


def run_export_bench(args: Any) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="gatrix-bp-"))
    store = _dataset(data_dir, args.events, now)
    report: dict[str, Any] = {"events": args.events, "formats": {}}
    for fmt in args.format or ["csv", "ndjson", "parquet"]:
        path = data_dir / f"export.{fmt}"
        report["formats"][fmt] = _export_file(store, fmt, path, now)
        path.unlink()
    store.command(f"DROP DATABASE {store.db}")
    return _emit(report, args.output)


def _segment_file(source: Path, target: Path) -> None:
    """The exported rows as Segment `page`/`track` messages, with user agents and IPs."""
    decoder = msgspec.json.Decoder()
    encode = msgspec.json.Encoder().encode
    with source.open("rb") as rows, target.open("wb") as out:
        for n, line in enumerate(rows):
            row = decoder.decode(line)
            page = {"url": f"https://bench.example{row['path']}", "referrer": row["referrer"]}
            msg = {
                "type": "page" if row["name"] == "screen_view" else "track",
                "event": row["name"],
                "anonymousId": row["device_id"],
                "timestamp": row["created_at"].replace(" ", "T") + "Z",
                "properties": row["properties"],
                "context": {
                    "userAgent": UAS[n % 3],
                    "ip": f"{1 + n % 200}.{n % 250}.{n % 7}.{n % 240}",
                    "page": page,
                },
            }
            out.write(encode(msg) + b"\n")


UMAMI_COLUMNS = (
    "website_id,session_id,visit_id,event_id,hostname,browser,os,device,screen,language,"
    "country,subdivision1,city,url_path,url_query,referrer_path,referrer_query,"
    "referrer_domain,page_title,event_type,event_name,created_at"
)
UMAMI_CLIENTS = (
    ("chrome", "Windows 10", "desktop"),
    ("ios", "iOS", "mobile"),
    ("firefox", "Mac OS", "laptop"),
)


def _umami_file(source: Path, target: Path) -> None:
    """The exported rows as Umami's `website_event` CSV export."""
    decoder = msgspec.json.Decoder()
    with source.open("rb") as rows, target.open("w", newline="") as out:
        writer = csv.writer(out)
        out.write(UMAMI_COLUMNS + "\n")
        for n, line in enumerate(rows):
            row = decoder.decode(line)
            browser, os_name, device = UMAMI_CLIENTS[n % 3]
            page = row["name"] == "screen_view"
            ref = urlsplit(row["referrer"])
            writer.writerow(
                (
                    "w",
                    row["device_id"],
                    row["session_id"],
                    n,
                    "bench.example",
                    browser,
                    os_name,
                    device,
                    row["screen"],
                    row["language"],
                    row["country"],
                    row["region"],
                    row["city"],
                    row["path"],
                    row["query"],
                    ref.path,
                    ref.query,
                    ref.netloc,
                    row["title"],
                    1 if page else 2,
                    "" if page else row["name"],
                    row["created_at"][:19],
                )
            )


def _import(store: Store, state: Path, fmt: str, path: Path, project: str) -> dict[str, Any]:
    started = time.perf_counter()
    with RssSampler() as rss:
        report = run_import(store, state, project, fmt, [path])
    wall = time.perf_counter() - started
    result = {
        "events": report.events,
        "seconds": round(report.seconds, 1),
        "events_per_s": round(report.events / report.seconds),
        # the whole call: also the hashing and cutting of the file, before the clock above
        "wall_seconds": round(wall, 1),
        "events_per_s_wall": round(report.events / wall),
        "rss_parent_start_mb": rss.start,
        "rss_parent_peak_mb": rss.peak,
        # the fork server and the worker processes together
        "rss_workers_peak_mb": rss.descendants_peak,
        "dropped": report.dropped,
    }
    _say(f"  import {fmt:<8} {json.dumps(result)}")
    return result


def run_import_bench(args: Any) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="gatrix-bp-"))
    store = _dataset(data_dir, args.events, now)
    source = data_dir / "export.ndjson"
    _export_file(store, "ndjson", source, now)
    report: dict[str, Any] = {"events": args.events, "formats": {}}
    state = data_dir / "imports"
    wanted = args.format or ["gatrix", "parquet", "segment", "umami"]
    if "gatrix" in wanted:
        report["formats"]["gatrix"] = _import(store, state, "gatrix", source, "bench-gatrix")
    if "parquet" in wanted:  # our own Parquet export, read back as `--format gatrix`
        parquet = data_dir / "export.parquet"
        _export_file(store, "parquet", parquet, now)
        report["formats"]["parquet"] = _import(store, state, "gatrix", parquet, "bench-parquet")
    if "segment" in wanted:
        segment = data_dir / "segment.ndjson"
        _segment_file(source, segment)
        report["formats"]["segment"] = _import(store, state, "segment", segment, "bench-segment")
    if "umami" in wanted:
        umami = data_dir / "umami.csv"
        _umami_file(source, umami)
        report["formats"]["umami"] = _import(store, state, "umami", umami, "bench-umami")
    store.command(f"DROP DATABASE {store.db}")
    return _emit(report, args.output)


def _emit(report: dict[str, Any], output: str | None) -> int:
    print(json.dumps(report))
    if output:
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
