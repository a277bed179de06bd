"""`python -m tools.bench wire`: requests/s of each drop-in wire format next to `/track`, in
one run against one embedded server (ratios decide; this machine is noisy), then every
event the server accepted is counted in ClickHouse.

Formats, in turn, each for `--seconds` at `--connections`: OpenPanel `/track` (the baseline),
Umami `/api/send`, Plausible `/api/event` (answers 202), Segment `/v1/track` (HTTP Basic
write key, from a backend). Every body is a page view or event of the same shape as the
`/track` bench's, with distinct paths.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.bench.load import raw_requests, run_requests
from tools.bench.payloads import ORIGIN, PATH_VARIANTS, USER_AGENT, headers, track_bodies
from tools.bench.processes import (
    Service,
    count_rows,
    create_project,
    embedded_env,
    free_port,
    say,
    wait_drained,
    wait_ready,
)

HOST_NAME = ORIGIN.removeprefix("https://")


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _umami(client_id: str) -> list[bytes]:
    return [
        _compact(
            {
                "type": "event",
                "payload": {
                    "website": client_id,
                    "hostname": HOST_NAME,
                    "url": f"/pricing/{n}?utm_source=bench",
                    "referrer": "https://www.google.com/",
                    "title": "Pricing",
                    "screen": "1920x1080",
                    "language": "en-US",
                },
            }
        )
        for n in range(PATH_VARIANTS)
    ]


def _plausible() -> list[bytes]:
    return [
        _compact(
            {
                "name": "pageview",
                "url": f"{ORIGIN}/pricing/{n}?utm_source=bench",
                "domain": HOST_NAME,
                "referrer": "https://www.google.com/",
            }
        )
        for n in range(PATH_VARIANTS)
    ]


def _segment() -> list[bytes]:
    return [
        _compact(
            {
                "event": "Order Completed",
                "anonymousId": f"anon-{n}",
                "properties": {"revenue": 9.99, "plan": "pro"},
                "context": {"page": {"url": f"{ORIGIN}/checkout/{n}"}},
            }
        )
        for n in range(PATH_VARIANTS)
    ]


def _phases(port: int, client_id: str) -> dict[str, list[bytes]]:
    browser = {"Content-Type": "application/json", "Origin": ORIGIN, "User-Agent": USER_AGENT}
    key = base64.b64encode(f"{client_id}:".encode()).decode()
    backend = {"Content-Type": "application/json", "Authorization": f"Basic {key}"}
    return {
        "track": raw_requests(port, "/track", headers(client_id), track_bodies()),
        "umami": raw_requests(port, "/api/send", browser, _umami(client_id)),
        "plausible": raw_requests(port, "/api/event", browser, _plausible()),
        "segment": raw_requests(port, "/v1/track", backend, _segment()),
    }


def run_wire_bench(args: Any) -> int:
    seconds, connections = float(args.seconds), int(args.connections)
    env = embedded_env()
    data_dir = tempfile.mkdtemp(prefix="gatrix-wire-")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="gatrix-wire-logs-")) / "gatrix.log"
    server = Service(
        "gatrix serve",
        [sys.executable, "-m", "gatrix.cli", "serve", "--port", str(port), "--data-dir", data_dir],
        log,
    )
    problems: list[str] = []
    report: dict[str, Any] = {"seconds": seconds, "connections": connections, "formats": {}}
    try:
        project = create_project(data_dir, env)
        server.start(env)
        say(f"gatrix ready in {wait_ready(server, port):.1f}s on port {port}")
        accepted = 0
        for name, requests in _phases(port, project["client_id"]).items():
            say(f"loading {name} for {seconds:g}s…")
            run = run_requests(port, requests, connections, seconds)
            status = run.get("status") or {}
            ok = int(status.get("200", 0)) + int(status.get("other_2xx", 0))
            accepted += ok
            if run["non_2xx"]:
                problems.append(f"{name}: {run['non_2xx']} non-2xx replies")
            report["formats"][name] = {
                "rps": run["rps"],
                "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"],
                "accepted": ok,
                "non_2xx": run["non_2xx"],
            }
        base = report["formats"]["track"]["rps"] or 1
        for row in report["formats"].values():
            row["vs_track"] = round(row["rps"] / base, 3)
        drained, _health = wait_drained(port)
        if drained is None:
            problems.append("buffer not drained after the load")
        server.stop()
        rows, error = count_rows(data_dir, env)
        report["accepted"], report["rows"] = accepted, rows
        if rows is None:
            problems.append(f"could not count rows: {error}")
        elif rows < accepted:
            problems.append(f"lost {accepted - rows} of {accepted} accepted events")
    finally:
        server.stop()
    report["problems"] = problems
    for name, row in report["formats"].items():
        say(
            f"  {name:<10} {row['rps']:>9,.0f} req/s  p99 {row['p99_ms']} ms  "
            f"×{row['vs_track']} of /track"
        )
    print(json.dumps(report))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if problems else 0
