"""`python -m tools.bench fairness`: one read client floods the server with heavy reports;
how long do another project's report and `/health` wait meanwhile?

Two runs of `gatrix serve` on the same generated data, one after the other:
- "turns": the default read gate (2 slots, 32 waiting places per caller);
- "no turns": 64 slots and an unbounded queue, so every report goes straight to a thread
  and the engine's lock, as reports did before the gate.
In each, the flooding client sends `--flood` parallel reports of the bench project
(breakdown of pages, 30 days: about a second each at a few million events); a second later a
client of another project asks for its metrics once, and `/health` is asked once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tools.bench.dashboard import GENERATE, _cli
from tools.bench.processes import embedded_env, free_port, say

MODES = {
    "turns": {},
    "no turns": {"GATRIX_QUERY_SLOTS": "64", "GATRIX_QUERY_QUEUE": "10000"},
}


def _serve(data: Path, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**embedded_env(), **extra}
    serve = subprocess.Popen(
        [sys.executable, "-m", "gatrix.cli", "serve", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return serve
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(serve.pid, signal.SIGKILL)
    raise RuntimeError("gatrix serve did not become healthy")


def _headers(client: dict[str, str]) -> dict[str, str]:
    return {
        "openpanel-client-id": client["client_id"],
        "openpanel-client-secret": client["client_secret"],
    }


async def _timed(http: httpx.AsyncClient, path: str, **kw: Any) -> tuple[int, float]:
    started = time.perf_counter()
    reply = await http.get(path, **kw)
    return reply.status_code, time.perf_counter() - started


async def _scenario(url: str, heavy: dict, quiet: dict, flood: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=flood + 10)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        report = f"/insights/{heavy['project_id']}/breakdown/pages"
        params = {"range": "30d", "limit": "50"}
        # one alone first: what a single heavy report costs on this data
        _, alone = await _timed(http, report, params=params, headers=_headers(heavy))
        started = time.perf_counter()
        flooding = [
            asyncio.create_task(_timed(http, report, params=params, headers=_headers(heavy)))
            for _ in range(flood)
        ]
        await asyncio.sleep(1.0)
        other = asyncio.create_task(
            _timed(
                http,
                f"/insights/{quiet['project_id']}/metrics",
                params={"range": "30d"},
                headers=_headers(quiet),
            )
        )
        health_status, health_s = await _timed(http, "/health")
        other_status, other_s = await other
        results = await asyncio.gather(*flooding)
        whole = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "heavy_report_alone_ms": round(alone * 1000),
        "other_project_ms": round(other_s * 1000),
        "other_project_status": other_status,
        "health_ms": round(health_s * 1000),
        "health_status": health_status,
        "flood_statuses": statuses,
        "flood_done_s": round(whole, 1),
    }


def run_fairness_bench(args: Any) -> int:
    data = Path(tempfile.mkdtemp(prefix="gatrix-fair-"))
    report: dict[str, Any] = {"events": 0, "flood": args.flood, "modes": {}}
    try:
        heavy = json.loads(_cli(data, "projects", "create", "--name", "bench"))
        quiet = json.loads(_cli(data, "projects", "create", "--name", "quiet"))
        say(f"generating {args.events:,} events")
        out = subprocess.run(
            [sys.executable, "-c", GENERATE, str(data), str(args.events)],
            capture_output=True,
            text=True,
            env=embedded_env(),
            check=True,
            timeout=1800,
        )
        report["events"] = int(out.stdout.strip().splitlines()[-1])
        for mode, extra in MODES.items():
            port = free_port()
            serve = _serve(data, port, extra)
            try:
                url = f"http://127.0.0.1:{port}"
                result = asyncio.run(_scenario(url, heavy, quiet, args.flood))
            finally:
                os.killpg(serve.pid, signal.SIGTERM)
                serve.wait(60)
            report["modes"][mode] = result
            say(
                f"{mode:>8}: another project's metrics {result['other_project_ms']:,} ms "
                f"({result['other_project_status']}), /health {result['health_ms']:,} ms "
                f"({result['health_status']}); flood {result['flood_statuses']} done in "
                f"{result['flood_done_s']} s; one heavy report alone "
                f"{result['heavy_report_alone_ms']} ms"
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
    line = json.dumps(report)
    print(line)
    if args.output:
        Path(args.output).write_text(line + "\n")
    return 0
