"""`python -m tools.bench ingest`: the order of the phases, and the report they add up to.

Order: bare app, gatrix `/track`, gatrix `/track/batch`, stop gatrix and count its rows, then
the flush phase alone. Each load runs while nothing else does, so the phases do not compete
for this machine's CPUs with one another.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gatrix.settings import Settings
from tools.bench.batch import batch_phase
from tools.bench.load import run_load, write_wrk_script
from tools.bench.payloads import HOST
from tools.bench.processes import (
    DRAIN_TIMEOUT,
    STOP_TIMEOUT,
    Service,
    add_exclusions,
    count_rows,
    create_project,
    embedded_env,
    free_port,
    get_json,
    group_rss_mb,
    run_flush_phase,
    say,
    wait_drained,
    wait_ready,
)
from tools.bench.report import account_rows, summary

DEFAULT_FLUSH_EVENTS = 200_000
# The phase's own flusher budget is 600 s; the rest covers start-up and filling the buffer.
FLUSH_PHASE_TIMEOUT = 900.0


def _single_problems(g_run: dict[str, Any], health: dict | None, problems: list[str]) -> int:
    """Events the generator saw accepted by `/track`; what looks wrong goes to `problems`."""
    status = g_run.get("status")
    if status is not None:
        accepted = int(status["200"])
    else:
        accepted = int(g_run["requests"]) - int(g_run["non_2xx"])
    if g_run["non_2xx"]:
        problems.append(f"gatrix answered {g_run['non_2xx']} non-2xx responses")
    if status is not None and status["other_2xx"]:
        problems.append(f"gatrix dropped {status['other_2xx']} events (2xx other than 200)")
    if sum(g_run["socket_errors"].values()):
        problems.append(f"socket errors against gatrix: {g_run['socket_errors']}")
    dead = ((health or {}).get("buffer") or {}).get("dead_letters")
    if dead:
        problems.append(f"{dead} dead letters after the /track run")
    return accepted


def _run_batch(port: int, client_id: str, events: int, problems: list[str]) -> dict[str, Any]:
    if not events:
        return {"events": 0, "http_events_per_s": None, "into_clickhouse_events_per_s": None}
    say(f"posting {events:,} events to /track/batch…")
    batch = batch_phase(port, client_id, events)
    if batch["events"] < events:
        problems.append(
            f"/track/batch accepted {batch['events']} of {events} events; "
            f"failures: {batch['failures']}"
        )
    if batch["seconds_until_queryable"] is None:
        problems.append(f"buffer not drained after the batch phase: {batch['health_after']}")
    dead = ((batch.get("health_after") or {}).get("buffer") or {}).get("dead_letters")
    if dead:
        problems.append(f"{dead} dead letters after the batch phase")
    return batch


def _stop_server(server: Service, problems: list[str]) -> None:
    say("stopping gatrix (SIGTERM to its main process, which stops its embedded Redis)…")
    code = server.stop()
    if server.stop_seconds is None:
        problems.append(
            f"gatrix did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM; "
            "its process group was killed"
        )
    elif code not in (0, -signal.SIGTERM):
        # uvicorn re-raises the signal it caught once its graceful shutdown is done, so
        # "killed by SIGTERM" is the normal way for it to end; anything else is not.
        problems.append(f"gatrix exited with status {code} after SIGTERM")
    if server.leftovers and server.stop_seconds is not None:
        problems.append("gatrix exited but left processes in its group (killed them)")
    logged = server.error_lines()
    if logged:
        problems.append(f"gatrix logged {len(logged)} ERROR/Traceback lines, first: {logged[0]}")


def _run_flush(events: int, env: dict[str, str], problems: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"events": events, "seconds": None, "events_per_s": None, "rows": None}
    if not events:
        return result
    say(f"flushing {events:,} buffered events into a fresh ClickHouse…")
    doc, error = run_flush_phase(events, env, FLUSH_PHASE_TIMEOUT)
    if doc is None:
        problems.append(f"flush phase: {error}")
        return {**result, "error": error}
    if doc.get("rows") != events:
        problems.append(f"flush phase stored {doc.get('rows')} rows of {events} events")
    return {**result, **doc}


IDLE_SETTLE_S = 5.0


def _bare_service(port: int, processes: int, log: Path) -> Service:
    argv = [sys.executable, "-m", "tools.bench.bare", "--port", str(port)]
    return Service(f"bare app ×{processes}", [*argv, "--processes", str(processes)], log)


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def run_ingest_bench(args: Any) -> int:
    seconds = float(args.seconds)
    connections = int(args.connections)
    batch_events = int(args.batch_events)
    flush_events = int(getattr(args, "flush_events", DEFAULT_FLUSH_EVENTS))
    output: str | None = args.output
    if seconds <= 0 or connections <= 0 or batch_events < 0 or flush_events < 0:
        say(
            "error: --seconds and --connections must be positive, "
            "--batch-events and --flush-events not negative"
        )
        return 2

    generator = "wrk" if shutil.which("wrk") else "python-asyncio"
    env = embedded_env()
    data_dir = tempfile.mkdtemp(prefix="gatrix-bench-")
    log_dir = Path(tempfile.mkdtemp(prefix="gatrix-bench-logs-"))
    gport, bport, bnport = free_port(), free_port(), free_port()
    workers = int(getattr(args, "workers", 0) or 0) or Settings().process_count
    server = Service(
        "gatrix serve",
        [
            sys.executable,
            "-m",
            "gatrix.cli",
            "serve",
            "--port",
            str(gport),
            "--data-dir",
            data_dir,
            "--workers",
            str(workers),
        ],
        log_dir / "gatrix.log",
    )
    # the baseline of the ratio: one bare process, as it has always been measured; with
    # several gatrix processes, a bare app with as many processes too
    bare = _bare_service(bport, 1, log_dir / "bare.log")
    bare_n = _bare_service(bnport, workers, log_dir / "bare-n.log") if workers > 1 else None
    problems: list[str] = []  # something wrong with what was measured
    notes: list[str] = []  # expected artefacts of the method, reported for transparency
    keep_logs = False
    try:
        say(f"data dir {data_dir}; generator {generator}")
        project = create_project(data_dir, env)
        client_id = project["client_id"]
        exclusions = int(getattr(args, "exclusions", 0))
        if exclusions:
            add_exclusions(data_dir, env, project["project_id"], exclusions)
            say(f"{exclusions} exclusion rules (none matching the load)")

        server.start(env)
        bare.start(env)
        ready_s = wait_ready(server, gport)
        say(f"gatrix ready in {ready_s:.1f}s on port {gport} ({workers} processes)")
        assert server.proc is not None  # started above
        time.sleep(IDLE_SETTLE_S)  # the ingest processes finish starting
        rss_idle = group_rss_mb(server.proc.pid)
        wait_ready(bare, bport)
        if bare_n is not None:
            bare_n.start(env)
            wait_ready(bare_n, bnport)

        script: Path | None = None
        if generator == "wrk":
            script = Path(data_dir) / "track.lua"
            write_wrk_script(script, client_id)

        # Bare first: the gatrix server is idle meanwhile, and its drain is timed right after
        # its own load without anything else running.
        say(f"loading the bare app for {seconds:g}s…")
        bare_run = run_load(generator, bport, client_id, script, connections, seconds)
        bare_n_run = None
        if bare_n is not None:
            say(f"loading the bare app in {workers} processes for {seconds:g}s…")
            bare_n_run = run_load(generator, bnport, client_id, script, connections, seconds)
            bare_n.stop(timeout=10)
        say(f"loading gatrix /track for {seconds:g}s…")
        g_run = run_load(generator, gport, client_id, script, connections, seconds)
        rss_load = group_rss_mb(server.proc.pid)
        queryable_s, health = wait_drained(gport)
        if queryable_s is None:
            problems.append(f"buffer not drained {DRAIN_TIMEOUT:.0f}s after load; health {health}")
        accepted_single = _single_problems(g_run, health, problems)
        batch = _run_batch(gport, client_id, batch_events, problems)

        # Snapshot right before the stop: rows are counted only after it, so a non-empty buffer
        # here is the first suspect for any shortfall.
        _status, before_stop = get_json(f"http://{HOST}:{gport}/health")
        buffer_before_stop = (before_stop or {}).get("buffer")
        _stop_server(server, problems)

        rows, count_error = count_rows(data_dir, env)
        if rows is None:
            problems.append(f"could not count rows: {count_error}")
        expected = accepted_single + int(batch["events"])
        lost, uncounted = account_rows(rows, expected, connections, problems, notes)

        bare.stop()
        # Last, with every other process stopped, so nothing else competes for the CPUs.
        flush = _run_flush(flush_events, env, problems)
        report: dict[str, Any] = {
            "generator": generator,
            "connections": connections,
            "seconds": seconds,
            "gatrix": {
                "rps": g_run["rps"],
                "p50_ms": g_run["p50_ms"],
                "p99_ms": g_run["p99_ms"],
                "requests": g_run["requests"],
                "accepted": accepted_single,
                "non_2xx": g_run["non_2xx"],
                "errors": sum(g_run["socket_errors"].values()),
                "socket_errors": g_run["socket_errors"],
            },
            "bare": {
                "rps": bare_run["rps"],
                "p50_ms": bare_run["p50_ms"],
                "p99_ms": bare_run["p99_ms"],
                "requests": bare_run["requests"],
                "non_2xx": bare_run["non_2xx"],
                "errors": sum(bare_run["socket_errors"].values()),
            },
            "ratio": round(g_run["rps"] / bare_run["rps"], 4) if bare_run["rps"] else None,
            "workers": workers,
            "rss_mb": {"idle": rss_idle, "after_track_load": rss_load},
            "bare_same_processes": (
                {k: bare_n_run[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "non_2xx")}
                if bare_n_run
                else None
            ),
            "ratio_same_processes": (
                round(g_run["rps"] / bare_n_run["rps"], 4)
                if bare_n_run and bare_n_run["rps"]
                else None
            ),
            "seconds_until_queryable": round(queryable_s, 3) if queryable_s is not None else None,
            "batch": {
                k: batch.get(k)
                for k in (
                    "events",
                    "http_events_per_s",
                    "into_clickhouse_events_per_s",
                    "seconds_until_queryable",
                    "rejected",
                    "dropped",
                )
            },
            "flush": flush,
            "rows_in_clickhouse": rows,
            "expected_rows": expected,
            "lost": lost,
            "uncounted_in_flight": uncounted,
            "buffer_before_stop": buffer_before_stop,
            "server_stop_seconds": (
                round(server.stop_seconds, 2) if server.stop_seconds is not None else None
            ),
            "problems": problems,
            "notes": notes,
            "machine": _machine(),
        }
        say(summary(report))
        if problems:
            keep_logs = True
            say(f"\ngatrix server log (kept in {server.log_path}), last lines:\n{server.tail()}")
        print(json.dumps(report), flush=True)
        if output:
            Path(output).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    except Exception as exc:
        keep_logs = True
        say(f"benchmark failed: {type(exc).__name__}: {exc}")
        for service in (server, bare):
            say(f"\n{service.name} log ({service.log_path}), last lines:\n{service.tail()}")
        return 1
    finally:
        bare.stop(timeout=10)
        if bare_n is not None:
            bare_n.stop(timeout=10)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
