"""`gatrix bench ingest`: throughput, latency and loss of `/track`, measured end to end.

The benchmark starts a real `gatrix serve` in embedded mode (chDB + embedded Redis) in its own
temp data dir, and next to it a bare ASGI app served by the same uvicorn settings. The bare app
does nothing but read the body and answer, so its rate is the ceiling this machine, this server
software and this load generator allow; the ratio of the two says how much of that ceiling the
ingest path keeps, which is more portable across machines than a raw requests/s figure.

The load generator runs in its own process (wrk, or a small asyncio client when wrk is missing)
so that its CPU use never shares an event loop or a GIL with what it measures. Everything binds
to 127.0.0.1, every phase has a deadline, and every subprocess is stopped in a `finally`.

Loss is checked from the outside: once /health reports an empty buffer the server is stopped and
a fresh process counts the rows in ClickHouse. Waiting for the drain first matters: events still
buffered at shutdown stay in the embedded Redis and only reach ClickHouse after a restart, which
would read as loss here. The benchmark never opens chDB itself, because only one process may
hold a chDB data path at a time.

Human-readable progress and the summary go to stderr; the JSON report is the one line on stdout
(and the `--output` file), like the other CLI commands meant for automation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ORIGIN = "https://bench.example"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
# Variables that would point the server at external Redis/ClickHouse/SQL; without them it runs
# fully embedded inside the temp data dir, so the benchmark never touches a real deployment.
EXTERNAL_ENV = (
    "REDIS_URL",
    "REDIS_HOST",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_HOST",
    "DATABASE_URL",
    "MYSQL_HOST",
)
# Distinct paths per request keep the pipeline honest (URL parsing, UTM extraction) without
# making the generator build requests on the fly: wrk cycles through pre-formatted requests.
PATH_VARIANTS = 64
BATCH_SIZE = 1000  # the server's MAX_BATCH
BATCH_CLIENTS = 4
STARTUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
HEALTH_POLL = 0.1
LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- the ceiling

_BARE_BODY = b'{"deviceId":"x","sessionId":"y"}'
_BARE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BARE_BODY)).encode()),
]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ingest endpoint can do: read the whole body, answer a fixed JSON reply."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = bool(message.get("more_body", False))
    await send({"type": "http.response.start", "status": 200, "headers": _BARE_HEADERS})
    await send({"type": "http.response.body", "body": _BARE_BODY})


# --------------------------------------------------------------------------- payloads


def _envelope(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "payload": {
            "name": "screen_view",
            "properties": {
                "__path": f"{ORIGIN}/pricing/{n}?utm_source=bench",
                "__referrer": "https://www.google.com/",
                "__title": "Pricing",
            },
        },
    }


def _track_bodies() -> list[bytes]:
    return [json.dumps(_envelope(n), separators=(",", ":")).encode() for n in range(PATH_VARIANTS)]


def _batch_body(size: int, seed: int) -> bytes:
    items = [_envelope(seed * BATCH_SIZE + i) for i in range(size)]
    return json.dumps(items, separators=(",", ":")).encode()


def _headers(client_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Origin": ORIGIN,
        "openpanel-client-id": client_id,
        "User-Agent": USER_AGENT,
    }


# --------------------------------------------------------------------------- processes


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # so the log tail shows what happened right before a failure
    return env


@dataclass
class Service:
    """A server subprocess in its own session, so a signal to its group reaches its children."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the group, give it `timeout` for its graceful shutdown, then SIGKILL."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            started = time.perf_counter()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
                self.stop_seconds = time.perf_counter() - started
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        return self.exit_code

    def error_lines(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [
            line.strip()
            for line in text.splitlines()
            if line.startswith("Traceback") or re.search(r"\b(ERROR|CRITICAL)\b", line)
        ]

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:
    """GET a JSON document; /health answers 503 with a body when degraded, so keep that body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return 0, None
    try:
        doc = json.loads(raw)
    except ValueError:
        return status, None
    return status, doc if isinstance(doc, dict) else None


def _wait_ready(service: Service, port: int, timeout: float = STARTUP_TIMEOUT) -> float:
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited during startup")
        status, _doc = _get_json(f"http://{HOST}:{port}/health", timeout=2.0)
        if status == 200:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not healthy after {timeout:.0f}s")


def _wait_drained(port: int, timeout: float = DRAIN_TIMEOUT) -> tuple[float | None, dict | None]:
    """Seconds until the buffer is empty and no claimed batch is waiting for its insert.

    Flushers acknowledge a claim only after ClickHouse took the batch, so depth 0 with no claims
    means every accepted event is queryable.
    """
    started = time.perf_counter()
    last: dict[str, Any] | None = None
    while time.perf_counter() - started < timeout:
        _status, doc = _get_json(f"http://{HOST}:{port}/health")
        if doc is not None:
            last = doc
            buf = doc.get("buffer") or {}
            if buf.get("depth") == 0 and buf.get("claimed_batches") == 0:
                return time.perf_counter() - started, last
        time.sleep(HEALTH_POLL)
    return None, last


def _create_project(data_dir: str, env: dict[str, str]) -> dict[str, str]:
    argv = [sys.executable, "-m", "gatrix.cli", "projects", "create", "--name", "bench"]
    argv += ["--origin", ORIGIN, "--data-dir", data_dir]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"projects create failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(f"projects create printed {len(lines)} lines, expected one JSON line")
    return dict(json.loads(lines[0]))


def _count_rows(data_dir: str, env: dict[str, str]) -> tuple[int | None, str]:
    code = (
        "from gatrix.store import Store; "
        f"s = Store('chdb://' + {data_dir!r} + '/clickhouse'); "
        "print(s.query_rows('SELECT count() FROM gatrix.events')[0][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].strip().isdigit():
        return None, done.stderr[-2000:]
    return int(lines[-1].strip()), ""


# --------------------------------------------------------------------------- wrk

_WRK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = {origin}
wrk.headers["openpanel-client-id"] = {client_id}
wrk.headers["User-Agent"] = {user_agent}

local bodies = {{
{bodies}
}}
local requests = {{}}
local i = 0
-- Status counts live in each thread's Lua state; done() reads them back through setup().
local threads = {{}}
ok, other2xx, bad = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  -- Pre-formatted once: building requests in request() would bottleneck the generator.
  for n = 1, #bodies do
    requests[n] = wrk.format(nil, nil, nil, bodies[n])
  end
end

function request()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status < 300 then
    other2xx = other2xx + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok")
    b = b + t:get("other2xx")
    c = c + t:get("bad")
  end
  io.write(string.format("BENCH_STATUS ok=%d other2xx=%d bad=%d\\n", a, b, c))
end
"""


def _lua_string(text: str) -> str:
    # A JSON string literal of ASCII text is also a valid Lua string literal.
    return json.dumps(text, ensure_ascii=True)


def _write_wrk_script(path: Path, client_id: str) -> None:
    bodies = ",\n".join("  " + _lua_string(b.decode()) for b in _track_bodies())
    path.write_text(
        _WRK_LUA.format(
            origin=_lua_string(ORIGIN),
            client_id=_lua_string(client_id),
            user_agent=_lua_string(USER_AGENT),
            bodies=bodies,
        )
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers the report needs from wrk's text output (wrk has no machine format)."""
    out: dict[str, Any] = {
        "rps": None,
        "p50_ms": None,
        "p99_ms": None,
        "requests": None,
        "non_2xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "status": None,
    }
    for line in text.splitlines():
        if m := re.match(r"\s*Requests/sec:\s+([\d.]+)", line):
            out["rps"] = float(m.group(1))
        elif m := re.match(r"\s*(50|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", line):
            out[f"p{m.group(1)}_ms"] = round(_to_ms(m.group(2), m.group(3)), 3)
        elif m := re.match(r"\s*(\d+) requests in ", line):
            out["requests"] = int(m.group(1))
        elif m := re.match(r"\s*Non-2xx or 3xx responses:\s+(\d+)", line):
            out["non_2xx"] = int(m.group(1))
        elif m := re.match(
            r"\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line
        ):
            keys = ("connect", "read", "write", "timeout")
            out["socket_errors"] = dict(zip(keys, map(int, m.groups()), strict=True))
        elif m := re.match(r"BENCH_STATUS ok=(\d+) other2xx=(\d+) bad=(\d+)", line):
            ok, other, bad = map(int, m.groups())
            out["status"] = {"200": ok, "other_2xx": other, "non_2xx": bad}
    return out


def _run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    duration = max(1, math.ceil(seconds))  # wrk takes whole seconds
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    parsed = parse_wrk(done.stdout)
    if parsed["rps"] is None or parsed["requests"] is None:
        raise RuntimeError(f"could not parse wrk output:\n{done.stdout}")
    parsed["raw"] = done.stdout
    return parsed


# --------------------------------------------------------------------------- fallback generator


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if m := re.search(rb"\r\ncontent-length:\s*(\d+)", lower):
        length = int(m.group(1))
        if length:
            await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _fallback_async(
    port: int, path: str, client_id: str, connections: int, seconds: float
) -> dict[str, Any]:
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers(client_id).items())
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in _track_bodies()
    ]
    latencies: list[float] = []
    status = {"200": 0, "other_2xx": 0, "non_2xx": 0}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}

    async def connection(offset: int) -> None:
        i = offset
        while True:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                errors["connect"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while True:
                    i += 1
                    started = time.perf_counter()
                    writer.write(requests[i % len(requests)])
                    async with asyncio.timeout(5):
                        code = await _read_response(reader)
                    latencies.append(time.perf_counter() - started)
                    key = "200" if code == 200 else "other_2xx" if code < 300 else "non_2xx"
                    status[key] += 1
            except TimeoutError:
                errors["timeout"] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors["read"] += 1
            finally:
                writer.close()

    tasks = [asyncio.create_task(connection(n)) for n in range(connections)]
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    # Like wrk: whatever is in flight at the deadline is abandoned, not counted.
    completed = len(latencies)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(latencies[:completed])

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "rps": round(completed / elapsed, 2),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "requests": completed,
        "non_2xx": status["non_2xx"],
        "socket_errors": errors,
        "status": status,
    }


def _fallback_load(
    conn: Connection, port: int, path: str, client_id: str, connections: int, seconds: float
) -> None:
    """Entry point of the generator process (module level, so it works with spawn)."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        conn.send(asyncio.run(_fallback_async(port, path, client_id, connections, seconds)))
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def _run_fallback(port: int, client_id: str, connections: int, seconds: float) -> dict[str, Any]:
    # spawn, not fork: the parent may hold threads and sockets a forked child must not inherit.
    # A bare Process rather than a Pool: a Pool would respawn a worker that dies, forever.
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_fallback_load,
        args=(child, port, "/track", client_id, connections, seconds),
        daemon=True,
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(seconds + 60):
            raise RuntimeError("the load generator process did not report back in time")
        result = dict(parent.recv())
    except EOFError as exc:
        raise RuntimeError(f"the load generator process died (exit {proc.exitcode})") from exc
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
    if "error" in result:
        raise RuntimeError(f"load generator failed: {result['error']}")
    return result


# --------------------------------------------------------------------------- batch phase


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
    full = [_batch_body(BATCH_SIZE, seed) for seed in range(8)]
    state = BatchState(target=target)
    url = f"http://{HOST}:{port}/track/batch"
    headers = _headers(client_id)

    async def client(worker: int) -> None:
        seq = worker
        async with httpx.AsyncClient(timeout=60.0) as http:
            # Reserve before sending so the clients together stop at the target, not past it.
            while state.accepted + state.in_flight < target and time.perf_counter() < deadline:
                if len(state.failures) > 20:
                    return
                size = min(BATCH_SIZE, target - state.accepted - state.in_flight)
                body = full[seq % len(full)] if size == BATCH_SIZE else _batch_body(size, seq)
                seq += BATCH_CLIENTS
                state.in_flight += size
                try:
                    resp = await http.post(url, content=body, headers=headers)
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


def _batch_phase(port: int, client_id: str, target: int) -> dict[str, Any]:
    # Generous but finite: even 5k events/s finishes a million-event run well within it.
    http_budget = max(60.0, target / 5000)
    state = asyncio.run(_batch_load(port, client_id, target, time.perf_counter() + http_budget))
    drain_s, health = _wait_drained(port)
    # _wait_drained returns as soon as it sees the buffer empty, so "now" is when the last
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


# --------------------------------------------------------------------------- the run


def _load(
    generator: str,
    port: int,
    client_id: str,
    script: Path | None,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    if generator == "wrk" and script is not None:
        return _run_wrk(f"http://{HOST}:{port}/track", script, connections, seconds)
    return _run_fallback(port, client_id, connections, seconds)


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _summary(report: dict[str, Any]) -> str:
    g, b, batch = report["gatrix"], report["bare"], report["batch"]
    m = report["machine"]
    lines = [
        "",
        f"gatrix bench ingest — {report['generator']}, {report['connections']} connections, "
        f"{report['seconds']:g}s per run, {m['cpu_count']} CPUs ({m['platform']})",
        "  (the generator shares the machine's CPUs with the server it loads)",
        f"  bare ASGI ceiling : {_fmt(b['rps'])} req/s   p50 {_fmt(b['p50_ms'], '.2f')} ms   "
        f"p99 {_fmt(b['p99_ms'], '.2f')} ms",
        f"  gatrix /track     : {_fmt(g['rps'])} req/s   p50 {_fmt(g['p50_ms'], '.2f')} ms   "
        f"p99 {_fmt(g['p99_ms'], '.2f')} ms",
        f"  ratio             : {_fmt(report['ratio'], '.1%')} of the ceiling",
        f"  accepted          : {g['accepted']:,}   non-2xx {g['non_2xx']:,}   "
        f"socket errors {g['errors']:,}",
        f"  queryable after   : {_fmt(report['seconds_until_queryable'], '.2f')} s "
        "(load end → buffer empty, no claims)",
        f"  /track/batch      : {batch['events']:,} events, "
        f"{_fmt(batch['http_events_per_s'])} ev/s accepted over HTTP, "
        f"{_fmt(batch['into_clickhouse_events_per_s'])} ev/s into ClickHouse",
        f"  rows in ClickHouse: {_fmt(report['rows_in_clickhouse'], ',')}   "
        f"expected {report['expected_rows']:,}   lost {_fmt(report['lost'], ',')}",
    ]
    lines += [f"  note: {note}" for note in report["notes"]]
    lines += [f"  PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def run_ingest_bench(args: Any) -> int:
    seconds = float(args.seconds)
    connections = int(args.connections)
    batch_events = int(args.batch_events)
    output: str | None = args.output
    if seconds <= 0 or connections <= 0 or batch_events < 0:
        _say("error: --seconds and --connections must be positive, --batch-events not negative")
        return 2

    generator = "wrk" if shutil.which("wrk") else "python-asyncio"
    env = _embedded_env()
    data_dir = tempfile.mkdtemp(prefix="gatrix-bench-")
    log_dir = Path(tempfile.mkdtemp(prefix="gatrix-bench-logs-"))
    gport, bport = _free_port(), _free_port()
    server = Service(
        "gatrix serve",
        [sys.executable, "-m", "gatrix.cli", "serve", "--port", str(gport), "--data-dir", data_dir],
        log_dir / "gatrix.log",
    )
    bare = Service(
        "bare app",
        [
            sys.executable,
            "-c",
            "import uvicorn; uvicorn.run('gatrix.bench:bare_app', host='127.0.0.1', "
            f"port={bport}, loop='uvloop', http='httptools', lifespan='on', access_log=False, "
            "log_level='warning', proxy_headers=False, backlog=2048)",
        ],
        log_dir / "bare.log",
    )
    problems: list[str] = []  # something wrong with what was measured
    notes: list[str] = []  # expected artefacts of the method, reported for transparency
    keep_logs = False
    try:
        _say(f"data dir {data_dir}; generator {generator}")
        project = _create_project(data_dir, env)
        client_id = project["client_id"]

        server.start(env)
        bare.start(env)
        _say(f"gatrix ready in {_wait_ready(server, gport):.1f}s on port {gport}")
        _wait_ready(bare, bport)

        script: Path | None = None
        if generator == "wrk":
            script = Path(data_dir) / "track.lua"
            _write_wrk_script(script, client_id)

        # Bare first: the gatrix server is idle meanwhile, and its drain is timed right after
        # its own load without anything else running.
        _say(f"loading the bare app for {seconds:g}s…")
        bare_run = _load(generator, bport, client_id, script, connections, seconds)
        _say(f"loading gatrix /track for {seconds:g}s…")
        g_run = _load(generator, gport, client_id, script, connections, seconds)
        queryable_s, health = _wait_drained(gport)
        if queryable_s is None:
            problems.append(f"buffer not drained {DRAIN_TIMEOUT:.0f}s after load; health {health}")

        status = g_run.get("status")
        if status is not None:
            accepted_single = int(status["200"])
        else:
            accepted_single = int(g_run["requests"]) - int(g_run["non_2xx"])
        errors = sum(g_run["socket_errors"].values())
        if g_run["non_2xx"]:
            problems.append(f"gatrix answered {g_run['non_2xx']} non-2xx responses")
        if status is not None and status["other_2xx"]:
            problems.append(f"gatrix dropped {status['other_2xx']} events (2xx other than 200)")
        if errors:
            problems.append(f"socket errors against gatrix: {g_run['socket_errors']}")
        dead = ((health or {}).get("buffer") or {}).get("dead_letters")
        if dead:
            problems.append(f"{dead} dead letters after the /track run")

        batch: dict[str, Any] = {
            "events": 0,
            "http_events_per_s": None,
            "into_clickhouse_events_per_s": None,
        }
        if batch_events:
            _say(f"posting {batch_events:,} events to /track/batch…")
            batch = _batch_phase(gport, client_id, batch_events)
            if batch["events"] < batch_events:
                problems.append(
                    f"/track/batch accepted {batch['events']} of {batch_events} events; "
                    f"failures: {batch['failures']}"
                )
            if batch["seconds_until_queryable"] is None:
                problems.append(
                    f"buffer not drained after the batch phase: {batch['health_after']}"
                )
            dead = ((batch.get("health_after") or {}).get("buffer") or {}).get("dead_letters")
            if dead:
                problems.append(f"{dead} dead letters after the batch phase")

        # Snapshot right before the stop: rows are counted only after it, so a non-empty buffer
        # here is the first suspect for any shortfall.
        _status, before_stop = _get_json(f"http://{HOST}:{gport}/health")
        buffer_before_stop = (before_stop or {}).get("buffer")
        _say("stopping gatrix (SIGTERM to its process group)…")
        code = server.stop()
        if server.stop_seconds is None:
            problems.append(f"gatrix did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM; killed")
        elif code not in (0, -signal.SIGTERM):
            # uvicorn re-raises the signal it caught once its graceful shutdown is done, so
            # "killed by SIGTERM" is the normal way for it to end; anything else is not.
            problems.append(f"gatrix exited with status {code} after SIGTERM")
        logged = server.error_lines()
        if logged:
            problems.append(
                f"gatrix logged {len(logged)} ERROR/Traceback lines, first: {logged[0]}"
            )

        rows, count_error = _count_rows(data_dir, env)
        expected = accepted_single + int(batch["events"])
        lost = expected - rows if rows is not None else None
        if rows is None:
            problems.append(f"could not count rows: {count_error}")
        elif lost and lost > 0:
            problems.append(f"{lost} accepted events are missing from ClickHouse")
        elif lost and lost < 0:
            # wrk abandons requests still in flight at its deadline: the server may have taken
            # them without the generator ever counting the reply, at most one per connection.
            if -lost <= connections:
                notes.append(
                    f"{-lost} more rows than counted acceptances: within the {connections} "
                    "requests that can be in flight when the generator stops"
                )
            else:
                problems.append(
                    f"{-lost} more rows than counted acceptances: more than the {connections} "
                    "requests that can be in flight when the generator stops"
                )

        bare.stop()
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
                "errors": errors,
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
            "rows_in_clickhouse": rows,
            "expected_rows": expected,
            "lost": lost,
            "buffer_before_stop": buffer_before_stop,
            "server_stop_seconds": (
                round(server.stop_seconds, 2) if server.stop_seconds is not None else None
            ),
            "problems": problems,
            "notes": notes,
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            },
        }
        _say(_summary(report))
        if problems:
            keep_logs = True
            _say(f"\ngatrix server log (kept in {server.log_path}), last lines:\n{server.tail()}")
        line = json.dumps(report)
        print(line, flush=True)
        if output:
            Path(output).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    except Exception as exc:
        keep_logs = True
        _say(f"benchmark failed: {type(exc).__name__}: {exc}")
        for service in (server, bare):
            _say(f"\n{service.name} log ({service.log_path}), last lines:\n{service.tail()}")
        return 1
    finally:
        bare.stop(timeout=10)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
