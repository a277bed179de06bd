"""The subprocesses a benchmark run starts, and how it talks to them from the outside.

Everything binds to 127.0.0.1 and every wait has a deadline. The benchmark process never opens
chDB itself, because only one process may hold a chDB data path at a time: the server holds
its own, and rows are counted by a fresh process once the server has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.payloads import HOST, ORIGIN

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
STARTUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
HEALTH_POLL = 0.1
LOG_TAIL_LINES = 40


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # so the log tail shows what happened right before a failure
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else: cannot happen for our own session
    return True


@dataclass
class Service:
    """A server subprocess in its own session, so its children share a group we can reap.

    A graceful stop signals the main process only, as `docker stop` does: the server then
    drains its buffer and stops its own embedded Redis in order. Signalling the whole group
    would stop that Redis under it mid-drain, so the group is killed only when the graceful stop
    ran out of time, or to reap children the server left behind.
    """

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None
    # Processes still in the group after the main one exited: children it failed to stop.
    leftovers: bool = False

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
        """SIGTERM the main process, give it `timeout` to shut down, then SIGKILL the group."""
        if self.proc is None:
            return self.exit_code
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        if self.proc.poll() is None:
            started = time.perf_counter()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
                self.stop_seconds = time.perf_counter() - started
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if _group_alive(pgid):
            # Checked once the leader is gone, so only orphans can answer; they would outlive
            # the run (and hold the temp data dir) if not reaped here.
            self.leftovers = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
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


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:
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


def wait_ready(service: Service, port: int, timeout: float = STARTUP_TIMEOUT) -> float:
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited during startup")
        status, _doc = get_json(f"http://{HOST}:{port}/health", timeout=2.0)
        if status == 200:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not healthy after {timeout:.0f}s")


def wait_drained(port: int, timeout: float = DRAIN_TIMEOUT) -> tuple[float | None, dict | None]:
    """Seconds until the buffer is empty and no claimed batch is waiting for its insert.

    Flushers acknowledge a claim only after ClickHouse took the batch, so depth 0 with no claims
    means every accepted event is queryable.
    """
    started = time.perf_counter()
    last: dict[str, Any] | None = None
    while time.perf_counter() - started < timeout:
        _status, doc = get_json(f"http://{HOST}:{port}/health")
        if doc is not None:
            last = doc
            buf = doc.get("buffer") or {}
            if buf.get("depth") == 0 and buf.get("claimed_batches") == 0:
                return time.perf_counter() - started, last
        time.sleep(HEALTH_POLL)
    return None, last


def create_project(data_dir: str, env: dict[str, str]) -> dict[str, str]:
    argv = [sys.executable, "-m", "gatrix.cli", "projects", "create", "--name", "bench"]
    argv += ["--origin", ORIGIN, "--data-dir", data_dir]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"projects create failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(f"projects create printed {len(lines)} lines, expected one JSON line")
    return dict(json.loads(lines[0]))


def exclusion_rules(n: int) -> list[str]:
    """`n` exclusion rules (IPs, hosts and paths in turn) that the bench's traffic never
    matches: every hit pays for checking them all, and every event is still accepted."""
    kinds = [
        ("--ip", lambda i: f"203.0.{i % 250}.0/24"),
        ("--ip", lambda i: f"2001:db8:{i:x}::/48"),
        ("--host", lambda i: f"staging{i}.example.com"),
        ("--host", lambda i: f"*.preview{i}.example.com"),
        ("--path", lambda i: f"/admin{i}/*"),
        ("--path", lambda i: f"*/draft{i}"),
    ]
    argv: list[str] = []
    for i in range(n):
        flag, rule = kinds[i % len(kinds)]
        argv += [flag, rule(i)]
    return argv


def add_exclusions(data_dir: str, env: dict[str, str], project_id: str, n: int) -> None:
    argv = [sys.executable, "-m", "gatrix.cli", "projects", "exclude", "--project", project_id]
    argv += [*exclusion_rules(n), "--data-dir", data_dir]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"projects exclude failed ({done.returncode}): {done.stderr[-2000:]}")


def count_rows(data_dir: str, env: dict[str, str]) -> tuple[int | None, str]:
    code = (
        "from gatrix.clickhouse.store import Store; "
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


def run_flush_phase(events: int, env: dict[str, str], timeout: float) -> tuple[dict | None, str]:
    """Run `tools.bench.flushphase` in its own process: it opens a chDB path of its own.

    Its own session too, so that on a timeout its embedded Redis goes down with it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.bench.flushphase", str(events)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"the flush phase did not finish within {timeout:.0f}s"
    finally:
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    lines = out.strip().splitlines()
    try:
        doc = json.loads(lines[-1]) if lines else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return None, f"flush phase failed ({proc.returncode}): {err[-2000:]}"
    return doc, ""


def group_rss_mb(pgid: int) -> dict[str, float]:
    """Resident memory of every process in a service's group, by role, in MB: the primary
    (`gatrix serve`), its ingest processes, and the embedded Redis."""
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, flags=re.MULTILINE)
        if not match:
            continue
        if "gatrix.ingest.process" in cmdline:
            role = f"ingest {cmdline.split('--index ')[1].split()[0]}"
        elif "serve" in cmdline and "gatrix" in cmdline:
            role = "primary"
        elif "valkey" in cmdline or "redis" in cmdline:
            role = "redis"
        else:
            role = cmdline.split(" ")[0].rsplit("/", 1)[-1]
        out[role] = round(out.get(role, 0.0) + int(match.group(1)) / 1024, 1)
    return out
