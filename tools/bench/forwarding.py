"""What the ingest processes cost the pages: the latency of dashboard requests when some of
them land on an ingest process and are forwarded to the primary.

`python -m tools.bench forwarding` starts `gatrix serve` with one process, then with two, and
times the same requests in each (GET /login, a full page, and GET /health), each on a new
connection so the kernel spreads them over the processes. The two-process figures mix direct
and forwarded requests (about half each); the difference to one process is the forwarding.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.bench.payloads import HOST
from tools.bench.processes import Service, embedded_env, free_port, say, wait_ready

PATHS = ("/login", "/health")


def _get(port: int, path: str) -> tuple[float, int]:
    """One GET on a new connection: seconds to the whole reply, and its status."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    elapsed = time.perf_counter() - started
    status = int(b"".join(chunks)[9:12] or 0)
    return elapsed, status


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
    }


def _measure(workers: int, requests: int, env: dict[str, str]) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="gatrix-bench-fwd-")
    port = free_port()
    argv = [sys.executable, "-m", "gatrix.cli", "serve", "--port", str(port)]
    server = Service(
        f"gatrix serve ×{workers}",
        [*argv, "--data-dir", data_dir, "--workers", str(workers)],
        Path(data_dir) / "serve.log",
    )
    try:
        server.start(env)
        wait_ready(server, port)
        time.sleep(5)  # the ingest process finishes starting
        out: dict[str, Any] = {}
        for path in PATHS:
            for _ in range(20):  # warm both processes' caches and connections
                _get(port, path)
            samples, statuses = [], set()
            for _ in range(requests):
                elapsed, status = _get(port, path)
                samples.append(elapsed)
                statuses.add(status)
            out[path] = {**_figures(samples), "statuses": sorted(statuses)}
        return out
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def run_forwarding_bench(args: Any) -> int:
    requests = int(args.requests)
    env = embedded_env()
    report = {
        "requests": requests,
        "one_process": _measure(1, requests, env),
        "two_processes": _measure(2, requests, env),
    }
    for path in PATHS:
        one, two = report["one_process"][path], report["two_processes"][path]
        say(
            f"{path:8} one process p50 {one['p50_ms']} ms p99 {one['p99_ms']} ms | "
            f"two processes p50 {two['p50_ms']} ms p99 {two['p99_ms']} ms"
        )
    print(json.dumps(report), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
