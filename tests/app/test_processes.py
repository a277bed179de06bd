"""`gatrix serve --workers 2`: an ingest process beside the primary, as a user runs it.

Connections land on either process (SO_REUSEPORT), so every check here opens a fresh
connection per request and expects the same answer whichever process took it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gatrix.meta.projects import MAX_SECRET_FAILURES, SECRET_FAILURE_WINDOW_S

from ..conftest import wait_for
from ..processes import ServeProcess, count_rows, server_env
from ..websession import PASSWORD, post_form

pytestmark = pytest.mark.timeout(300)

ROOT = "/api/v1/analytics"


def _ids(serve: ServeProcess) -> dict[str, str]:
    line = next(ln for ln in serve.stderr().splitlines() if ln.startswith('{"project_id"'))
    return json.loads(line)


def _processes(serve: ServeProcess) -> list[dict]:
    return httpx.get(f"{serve.url}{ROOT}/health", timeout=10).json()["processes"]


def _metrics(serve: ServeProcess) -> str:
    return httpx.get(f"{serve.url}{ROOT}/metrics", timeout=10).text


def _per_process(serve: ServeProcess) -> dict[str, int]:
    text = _metrics(serve)
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r'gatrix_process_requests_total\{process="(\d+)"\} (\d+)', text)
    }


def _track(serve: ServeProcess, ids: dict[str, str], n: int) -> int:
    """n events, each on a new connection; returns how many were accepted."""
    accepted = 0
    for i in range(n):
        try:
            reply = httpx.post(
                f"{serve.url}{ROOT}/track",
                headers={
                    "openpanel-client-id": ids["client_id"],
                    "openpanel-client-secret": ids["client_secret"],
                },
                json={"type": "track", "payload": {"name": "signup", "properties": {"i": i}}},
                timeout=10,
            )
        except httpx.TransportError:
            continue  # a connection reset while a process was killed: not accepted, not lost
        if reply.status_code == 200:
            accepted += 1
    return accepted


@pytest.fixture
def served(tmp_path: Path):
    serve = ServeProcess(tmp_path / "data", GATRIX_WORKERS="2", GATRIX_ROOT_PATH=ROOT)
    try:
        serve.wait_ready_at(f"{ROOT}/health")
        assert wait_for(lambda: all(p["alive"] for p in _processes(serve)), timeout=30)
        # the ingest process is serving once its first report is in
        assert wait_for(lambda: "gatrix_ingest_processes_reporting 1" in _metrics(serve), 30)
        yield serve
    finally:
        serve.stop()


def test_both_processes_take_hits_and_the_primary_stores_them_all(served: ServeProcess) -> None:
    serve = served
    ids = _ids(serve)
    processes = _processes(serve)
    assert [p["role"] for p in processes] == ["primary", "ingest"]
    assert processes[1]["pid"] != processes[0]["pid"]

    assert _track(serve, ids, 200) == 200
    # an administrator's session works whichever process each request reaches: no
    # keep-alive, so every request is a new connection
    admin = httpx.Client(
        base_url=serve.url,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    with admin:
        made = post_form(
            admin, f"{ROOT}/setup", f"{ROOT}/setup", email="a@gatrix.test", password=PASSWORD
        )
        assert made.status_code == 200 and made.url.path == f"{ROOT}/projects", made.text[:500]
        pages = [admin.get(f"{ROOT}/dashboard/default") for _ in range(20)]
        assert {p.status_code for p in pages} == {200}
        assert all('hx-get="' in p.text for p in pages)
    # a stranger, whichever process they reach, is not the administrator who came before:
    # a forwarding process keeps no cookies of its own
    stranger = httpx.Client(base_url=serve.url, limits=httpx.Limits(max_keepalive_connections=0))
    with stranger:
        tries = [stranger.get(f"{ROOT}/projects") for _ in range(20)]
        assert {t.status_code for t in tries} <= {302, 303}, [t.status_code for t in tries]
        exports = [stranger.get(f"{ROOT}/insights/default/export?format=csv") for _ in range(10)]
        assert {e.status_code for e in exports} == {401}
        # nor does it add headers the client did not send (an encoding it did not ask for)
        scripts = [
            stranger.get(f"{ROOT}/op1.js", headers={"accept-encoding": ""}) for _ in range(10)
        ]
        assert {s.headers.get("content-encoding") for s in scripts} == {None}
        assert all(s.headers.get_list("date").__len__() == 1 for s in scripts)

    # wrong secrets spread over both processes, all at once (each counts before it checks):
    # the server as a whole checks at most 20, whatever the machine's speed
    def guess(i: int) -> int:
        return httpx.post(
            f"{serve.url}{ROOT}/track",
            headers={"openpanel-client-id": ids["client_id"], "openpanel-client-secret": f"no{i}"},
            json={"type": "track", "payload": {"name": "x"}},
            timeout=60,
        ).status_code

    # the budget is per window: a burst that a loaded machine spreads over more than one
    # window may be checked once more per window it spans
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=25) as pool:
        guesses = list(pool.map(guess, range(25)))
    windows = 1 + int((time.monotonic() - started) // SECRET_FAILURE_WINDOW_S)
    checked = MAX_SECRET_FAILURES * windows
    assert guesses.count(401) <= checked, (windows, guesses)
    assert guesses.count(429) >= len(guesses) - checked, (windows, guesses)

    def reported() -> dict[str, int] | None:
        counts = _per_process(serve)
        return counts if len(counts) == 2 and sum(counts.values()) >= 255 else None

    counts = wait_for(reported, timeout=15)
    assert counts, _per_process(serve)
    # fresh connections hash over both sockets: each process took a share of the requests
    assert counts["0"] > 0 and counts["1"] > 0, counts

    def stored() -> bool:
        reply = httpx.get(
            f"{serve.url}{ROOT}/insights/default/metrics?range=today",
            headers={
                "openpanel-client-id": ids["client_id"],
                "openpanel-client-secret": ids["client_secret"],
            },
            timeout=10,
        )
        return reply.status_code == 200 and reply.json()["events"] == 200

    assert wait_for(stored, timeout=20)


def test_a_killed_ingest_process_is_replaced_and_nothing_accepted_is_lost(
    served: ServeProcess,
) -> None:
    serve = served
    ids = _ids(serve)
    first = _processes(serve)[1]
    accepted = _track(serve, ids, 50)
    os.kill(first["pid"], signal.SIGKILL)
    accepted += _track(serve, ids, 100)

    def replaced() -> dict | None:
        child = _processes(serve)[1]
        return child if child["alive"] and child["pid"] != first["pid"] else None

    child = wait_for(replaced, timeout=20)
    assert child and child["restarts"] == 1
    accepted += _track(serve, ids, 50)
    assert accepted >= 190  # only requests whose connection the kill reset are missing
    serve.stop()
    assert serve.proc.returncode in (0, -signal.SIGTERM), serve.stderr()[-2000:]
    rows = count_rows(serve.data_dir, "SELECT count() FROM gatrix.events WHERE name = 'signup'")
    assert rows[0][0] == accepted


def test_an_ingest_process_ends_when_its_primary_is_killed(served: ServeProcess) -> None:
    serve = served
    child = _processes(serve)[1]["pid"]
    os.kill(serve.proc.pid, signal.SIGKILL)  # the primary alone, not its process group
    serve.proc.wait(10)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # exited; waiting for whoever adopted it to reap it

    assert wait_for(gone, timeout=30), "the orphaned ingest process kept running"


def test_one_worker_runs_one_process(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "data", GATRIX_WORKERS="1")
    try:
        serve.wait_ready()
        processes = httpx.get(f"{serve.url}/health", timeout=10).json()["processes"]
        assert [p["role"] for p in processes] == ["primary"]
        assert "gatrix_ingest_processes_reporting 0" in httpx.get(f"{serve.url}/metrics").text
    finally:
        serve.stop()


def test_a_second_server_on_the_same_port_is_refused(served: ServeProcess, tmp_path: Path) -> None:
    """SO_REUSEPORT would let it join the port and take half of the first server's traffic."""
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatrix.cli",
            "serve",
            "--port",
            str(served.port),
            "--data-dir",
            str(tmp_path / "other"),
        ],
        env=server_env(GATRIX_WORKERS="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{served.port}" in second.stderr
    assert _processes(served)[0]["alive"]
