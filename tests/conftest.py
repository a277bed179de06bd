"""Shared fixtures: real engines only.

- ClickHouse: the real chDB engine, one data directory per pytest process (chDB holds one path
  per process); tests isolate by project id or by a ClickHouse database of their own.
- Redis: the embedded valkey server, and the machine's Redis when REDIS_URL is given; the
  buffer contract tests run against both.
- SQL: SQLite in the data dir; MariaDB/PostgreSQL when GATRIX_TEST_MYSQL_URL /
  GATRIX_TEST_POSTGRES_URL are given.
- Server: the real ASGI app under uvicorn on a free port, in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from gatrix.app import create_asgi
from gatrix.buffer.embedded import EmbeddedRedis
from gatrix.clickhouse.store import Store
from gatrix.meta import models
from gatrix.meta.projects import NewClient, create_project
from gatrix.settings import Settings

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EXTERNAL_REDIS = os.environ.get("REDIS_URL", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gatrix-data")


@pytest.fixture(scope="session")
def embedded_redis_url(data_dir: Path) -> Iterator[str]:
    server = EmbeddedRedis(data_dir / "embedded")
    url = server.start()
    yield url
    server.stop()


# The buffer's contract tests (the only users of `redis`) run once per Redis we have: the
# embedded valkey always, and the server at REDIS_URL when one is given (CI gives one). The
# test ids say which ([embedded] / [external]); nothing is skipped.
REDIS_BACKENDS = ["embedded", "external"] if EXTERNAL_REDIS else ["embedded"]


@pytest.fixture(scope="session", params=REDIS_BACKENDS)
def redis_url(request: pytest.FixtureRequest, embedded_redis_url: str) -> str:
    return embedded_redis_url if request.param == "embedded" else EXTERNAL_REDIS


@pytest.fixture
async def redis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def chdb_dsn(data_dir: Path) -> str:
    return f"chdb://{data_dir / 'clickhouse'}"


@pytest.fixture(scope="session")
def store(chdb_dsn: str) -> Store:
    s = Store(chdb_dsn, "gatrix")
    s.migrate()
    return s


@pytest.fixture
def scratch_store(chdb_dsn: str) -> Iterator[Store]:
    """A ClickHouse database of the test's own, dropped afterwards."""
    s = Store(chdb_dsn, f"t_{uuid.uuid4().hex[:12]}")
    s.migrate()
    yield s
    s.command(f"DROP DATABASE IF EXISTS {s.db}")


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_asgi(settings)
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def services(self) -> Any:
        return self.app.runtime.services

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.serve())

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during startup")
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    env_free = {
        "data_dir": data_dir,
        "port": free_port(),
        "redis_url": EXTERNAL_REDIS,
        "redis_prefix": f"t{uuid.uuid4().hex[:8]}",
        "flush_interval": 1.0,
        "clickhouse_url": "",
        "clickhouse_host": "",
        "database_url": "",
        "mysql_host": "",
        "default_client_id": "",
    }
    env_free.update(overrides)
    return Settings(**env_free)


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(make_settings(data_dir)).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def server_engine(server: LiveServer) -> Any:
    """The shared live server's metadata database (starts that server)."""
    return server.services.engine


@pytest.fixture
def server_project(server_engine: Any) -> NewClient:
    """A fresh project in the shared live server's database (starts that server)."""
    return create_project(
        server_engine,
        f"test {uuid.uuid4().hex[:6]}",
        origins=["https://shop.example.com", "*.app.test"],
    )


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def browser_headers(client_id: str, origin: str = "https://shop.example.com") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "origin": origin,
        "user-agent": CHROME_UA,
        "openpanel-client-id": client_id,
        "openpanel-sdk-name": "web",
        "openpanel-sdk-version": "1.0.1",
    }


def send_page_view(
    base_url: str, client_id: str, page_url: str, name: str = "screen_view"
) -> httpx.Response:
    """What a visitor's browser sends for a page of `page_url`'s site."""
    origin = "/".join(page_url.split("/", 3)[:3])
    return httpx.post(
        f"{base_url}/track",
        json={"type": "track", "payload": {"name": name, "properties": {"__path": page_url}}},
        headers={"origin": origin, "user-agent": CHROME_UA, "openpanel-client-id": client_id},
    )


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    return last


def event_rows(store: Store, project_id: str) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT * FROM gatrix.events WHERE project_id = {p:String} ORDER BY created_at",
        {"p": project_id},
    )


def wait_events(store: Store, project_id: str, count: int, timeout: float = 15.0) -> list[dict]:
    rows = wait_for(lambda: len(event_rows(store, project_id)) >= count, timeout)
    assert rows, f"expected {count} events for {project_id}"
    return event_rows(store, project_id)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def sql_engine(data_dir: Path) -> Any:
    engine = models.make_engine(f"sqlite:///{data_dir / 'unit.db'}")
    models.migrate(engine)
    return engine


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    """A server of the test module's own (metadata database and Redis), so first-run setup can
    be tested. ClickHouse is the session's: chDB holds one data path per process."""
    own = Path(tmp_path_factory.mktemp("site"))
    live = LiveServer(make_settings(own, clickhouse_url=f"chdb://{data_dir / 'clickhouse'}"))
    yield live.start()
    live.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser download), shared by a module.
    Not by the session: Playwright's sync API holds an event loop on the main thread while
    it runs, and async tests collected after the browser tests could not start theirs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


# Tests that ask for nothing but these are pure functions of their arguments: `make
# test-fast` runs just them (`-m fast`), in seconds, with no server, engine or browser.
PURE_FIXTURES = {
    "request",
    "monkeypatch",
    "capsys",
    "caplog",
    "anyio_backend",
    # autouse ones that plugins add to every test (asyncio policy, hypothesis faker)
    "event_loop_policy",
    "_session_faker",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fast: a pure test (no server, engine or browser)")


# The longest files, started first: `make test` hands whole files to its processes in this
# order, and a file that takes minutes, started last, would leave the other processes idle
# (the suite ended 3 minutes after its other files with the crawler last).
LONGEST_FIRST = ("web/test_crawler.py", "insights/test_sealed_days_review.py")


def _start_order(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next(
        (i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_start_order)  # stable: each file keeps its own order
    for item in items:
        callspec = getattr(item, "callspec", None)
        parametrized = set(callspec.params) if callspec else set()
        used = set(getattr(item, "fixturenames", ())) - parametrized
        if used <= PURE_FIXTURES:
            item.add_marker(pytest.mark.fast)
