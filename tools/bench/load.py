"""The load generator for `/track`: wrk when installed, else a small asyncio client.

Either way it runs in its own process, so its CPU use never shares an event loop or a GIL with
the server it measures. Both report the same dict: rps, p50/p99 latency, completed requests,
non-2xx responses, socket errors, and per-status counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import re
import subprocess
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tools.bench.payloads import HOST, ORIGIN, USER_AGENT, headers, track_bodies

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


def write_wrk_script(path: Path, client_id: str) -> None:
    bodies = ",\n".join("  " + _lua_string(b.decode()) for b in track_bodies())
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


def raw_requests(port: int, path: str, head: dict[str, str], bodies: list[bytes]) -> list[bytes]:
    """Whole HTTP/1.1 POST requests, formatted once: the generator only cycles through them."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{lines}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def _fallback_async(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, Any]:
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
    conn: Connection, port: int, requests: list[bytes], connections: int, seconds: float
) -> None:
    """Entry point of the generator process (module level, so it works with spawn)."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        conn.send(asyncio.run(_fallback_async(port, requests, connections, seconds)))
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def run_requests(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, Any]:
    """Load `port` with `requests` in turn from a generator process of its own."""
    # spawn, not fork: the parent may hold threads and sockets a forked child must not inherit.
    # A bare Process rather than a Pool: a Pool would respawn a worker that dies, forever.
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_fallback_load,
        args=(child, port, requests, connections, seconds),
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


def run_load(
    generator: str,
    port: int,
    client_id: str,
    script: Path | None,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    if generator == "wrk" and script is not None:
        return _run_wrk(f"http://{HOST}:{port}/track", script, connections, seconds)
    requests = raw_requests(port, "/track", headers(client_id), track_bodies())
    return run_requests(port, requests, connections, seconds)
