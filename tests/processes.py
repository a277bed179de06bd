"""`gatrix serve` as a separate process, as a user runs it: start, wait, stop, kill, and count
the rows it stored (from another short-lived process: chDB holds one data path per process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from .conftest import free_port, wait_for

SERVER_ENV_DROP = (
    "REDIS_URL",
    "REDIS_HOST",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_HOST",
    "DATABASE_URL",
    "MYSQL_HOST",
    "GATRIX_DEFAULT_CLIENT_ID",
)


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROP}
    env.update(extra)
    return env


class ServeProcess:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatrix.cli",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
            ],
            env=server_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_ready_at("/health", timeout)

    def wait_ready_at(self, health_path: str, timeout: float = 60) -> None:
        def up() -> bool:
            try:
                reply = httpx.get(f"{self.url}{health_path}", timeout=2)
                return reply.status_code in (200, 503)
            except httpx.HTTPError:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                return False

        assert wait_for(up, timeout=timeout, interval=0.2), self.log.read_text()[-3000:]

    def kill_tree(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGTERM to the server only (as `docker stop` does); it stops its own Redis
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)  # beyond the server's own stop watchdog (50 s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def graceful(returncode: int | None) -> bool:
    # uvicorn re-raises the signal after a clean shutdown, so SIGTERM shows as -15
    return returncode in (0, -signal.SIGTERM)


def count_rows(data_dir: Path, sql: str) -> Any:
    code = (
        "import json, sys; from gatrix.clickhouse.store import Store; "
        f"s = Store('chdb://{data_dir / 'clickhouse'}'); "
        f"print(json.dumps(s.query_rows({sql!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=server_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
