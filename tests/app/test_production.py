"""Production concerns: behind a reverse proxy under a path prefix, trusted proxies, JSON logs,
/metrics, cluster DDL, two flushers on one Redis, and the container files."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.cli import build_parser
from gatrix.clickhouse.store import Store
from gatrix.settings import env_names

from ..conftest import CHROME_UA, free_port, wait_for
from ..processes import ServeProcess, count_rows

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/api/v1/analytics"


class PrefixProxy:
    """A minimal reverse proxy (like the Gatrix Express backend): forwards `PREFIX/...` to the
    upstream unchanged and appends the client's address to X-Forwarded-For."""

    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        client = httpx.Client(base_url=upstream, timeout=30, follow_redirects=False)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not self.path.startswith(PREFIX):
                    self.send_response(404)
                    self.end_headers()
                    return
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                forwarded = self.headers.get("x-forwarded-for")
                headers["x-forwarded-for"] = (
                    f"{forwarded}, " if forwarded else ""
                ) + self.client_address[0]
                reply = client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(reply.status_code)
                for key, value in reply.headers.multi_items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_OPTIONS = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_behind_a_reverse_proxy_under_a_prefix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = ServeProcess(
        data,
        GATRIX_ROOT_PATH=PREFIX,
        GATRIX_TRUSTED_PROXIES="127.0.0.1/32",
        GATRIX_LOG_FORMAT="json",
    )
    proxy = None
    try:
        serve.wait_ready()
        proxy = PrefixProxy(serve.url)
        base = proxy.url + PREFIX
        with httpx.Client(timeout=30) as web:
            first = web.get(f"{base}/")
            assert first.status_code in (302, 303, 307)
            assert first.headers["location"] == f"{PREFIX}/setup"
            setup = web.get(f"{base}/setup")
            assert setup.status_code == 200
            hrefs = re.findall(r'(?:href|src|action)="([^"]+)"', setup.text)
            assert hrefs and all(h.startswith(PREFIX) for h in hrefs), hrefs
            for asset in [h for h in hrefs if "/assets/" in h]:
                assert web.get(proxy.url + asset).status_code == 200, asset
            script = web.get(f"{base}/op1.js")
            assert script.status_code == 200 and b"op_disabled" in script.content
            assert web.get(f"{base}/health").json()["status"] == "ok"
            # the visitor's address travels in X-Forwarded-For through our trusted proxy
            reply = web.post(
                f"{base}/track",
                json={"type": "track", "payload": {"name": "page_view", "path": "/via-proxy"}},
                headers={"x-forwarded-for": "81.2.69.142", "user-agent": CHROME_UA},
            )
            assert reply.status_code == 200, reply.text
            assert web.get(f"{base}/health").headers["x-request-id"]

            def flushed() -> bool:
                return web.get(f"{base}/health").json()["buffer"]["depth"] == 0

            assert wait_for(flushed, timeout=15)
    finally:
        if proxy:
            proxy.close()
        serve.stop()
    assert count_rows(data, "SELECT path, country FROM gatrix.events") == [["/via-proxy", "GB"]]
    logs = [json.loads(line) for line in serve.stderr().splitlines() if line.startswith("{")]
    http_logs = [entry for entry in logs if entry.get("logger") == "gatrix.http"]
    assert http_logs and all(entry["request_id"] != "-" for entry in http_logs)
    assert any(entry.get("path") == "/setup" and entry.get("status") == 200 for entry in http_logs)


def test_metrics_endpoint(http: httpx.Client, server_project: Any) -> None:
    from ..conftest import browser_headers

    http.post(
        "/track",
        json={"type": "track", "payload": {"name": "metric_probe"}},
        headers=browser_headers(server_project.client_id),
    )
    text = http.get("/metrics").text
    assert (
        f'gatrix_events_total{{project="{server_project.project_id}",outcome="accepted"}} 1' in text
    )
    for name in (
        "gatrix_buffer_depth",
        "gatrix_dead_letters",
        "gatrix_flush_rows_total",
        "gatrix_flush_duration_seconds_bucket",
        "gatrix_request_duration_seconds_count",
        "gatrix_group_commits_total",
    ):
        assert name in text, name
    assert re.search(
        r'gatrix_request_duration_seconds_count\{route="track",status="2xx"\} \d+', text
    )


def test_request_id_is_echoed(http: httpx.Client) -> None:
    assert (
        http.get("/health", headers={"x-request-id": "abc123"}).headers["x-request-id"] == "abc123"
    )
    assert len(http.get("/health").headers["x-request-id"]) == 16


def test_cluster_ddl() -> None:
    store = Store("http://clickhouse:8123/analytics", "analytics", cluster="gatrix_cluster")
    statements = [s for _, _, group in store.migration_statements() for s in group]
    backfills = [s for s in statements if s.startswith("INSERT INTO")]
    statements = [s for s in statements if s not in backfills]
    assert all(" ON CLUSTER gatrix_cluster" in s for s in statements)
    # a backfill runs once, from one node, through the Distributed tables
    assert backfills and all("_local" not in s for s in backfills)
    local = [s for s in statements if "_local ON CLUSTER" in s and "CREATE TABLE" in s]
    distributed = [s for s in statements if "ENGINE = Distributed(" in s]
    # events, profiles, counters, identity links, 5 rollups, the 2 tables of the people
    # index, live_events, the identity map, and the 3 tables each of the sealed session
    # hours, session days, page days and day totals
    assert len(local) == len(distributed) == 25
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/analytics/events', "
        "'{replica}')" in local[0]
    )
    assert any(
        "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/analytics/"
        "profile_counters', '{replica}', value)" in s
        for s in local
    )
    assert any("ReplicatedAggregatingMergeTree(" in s for s in local)
    views = [s for s in statements if "MATERIALIZED VIEW" in s]
    # 9 views (3 of them — sessions, hourly, event_hourly — dropped and made again by 0006),
    # the people index's 3, live_events', the identity map's, and the four touch records'
    assert len(views) == 18
    drops = [s for s in statements if s.startswith("DROP VIEW")]
    assert drops == [
        f"DROP VIEW IF EXISTS analytics.{name} ON CLUSTER gatrix_cluster"
        for name in ("sessions_mv", "hourly_mv", "event_hourly_mv")
    ]
    for view in views:
        # each node's views read its own local tables
        assert re.search(
            r"FROM analytics\.(events|profiles|identity_links|sessions|page_hourly|hourly)_local",
            view,
        )
        assert re.search(r"TO analytics\.\w+_local AS", view)
    # a table's schema changes apply to every node's local table (the projection of 0014)
    alters = [s for s in statements if s.startswith("ALTER TABLE")]
    assert len(alters) == 3
    assert all(s.startswith("ALTER TABLE analytics.events_local ON CLUSTER ") for s in alters)
    assert "ADD PROJECTION IF NOT EXISTS events_by_path" in alters[1]
    with pytest.raises(ValueError):
        Store("http://c:8123/a", "a", cluster="bad name; DROP").migration_statements()


async def test_two_flushers_on_one_redis(redis: Any, prefix: str, scratch_store: Store) -> None:
    items = [
        b"e"
        + json.dumps(
            {
                "id": f"00000000-0000-4000-8000-{n:012d}",
                "project_id": "two",
                "name": "screen_view",
                "session_id": f"s{n % 50}",
                "session_start": "2026-05-01 10:00:00.000",
                "created_at": "2026-05-01 10:00:01.000",
                "device_id": "d",
            }
        ).encode()
        for n in range(5000)
    ]
    buffer = Buffer(redis, prefix)
    await buffer.push_raw(items)
    # a claim takes the whole list when it holds at most 20 inserts' worth: with 100 rows per
    # insert the first claims take heads of the list, so both flushers have work
    first = Flusher(buffer, scratch_store, batch_size=100)
    second = Flusher(Buffer(redis, prefix), scratch_store, batch_size=100)
    # each run stops once the buffer is drained; the budget only has to outlast a loaded
    # machine (the default 5 s did not: 50 inserts with their rollups took longer there)
    runs = [f.run(max_seconds=300) for f in (first, second, first, second)]
    written = await asyncio.gather(*runs)
    assert sum(written) == 5000
    assert first.stats.batches > 0 and second.stats.batches > 0  # both took part
    [[rows]] = scratch_store.query_rows(f"SELECT count() FROM {scratch_store.db}.events")
    assert rows == 5000


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"clickhouse", "redis", "web", "worker", "mysql"} <= set(services)
    assert services["mysql"]["profiles"] == ["mysql"]
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert (
        ":" in services["clickhouse"]["image"] and "latest" not in services["clickhouse"]["image"]
    )
    assert "--appendonly" in services["redis"]["command"]
    for name in ("clickhouse", "redis"):
        assert "healthcheck" in services[name]
    volumes = set(compose["volumes"])
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes or (ROOT / source).is_file(), mount
    ttl_config = (ROOT / "deploy/clickhouse/gatrix.xml").read_text()
    assert "<ttl>" in ttl_config and "max_server_memory_usage_to_ram_ratio" in ttl_config
    known = env_names()
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert set(env) <= known, set(env) - known
        build_parser().parse_args(services[name]["command"])  # a real CLI command
    assert services["web"]["environment"]["PORT"] == "${PORT:-3002}"
    example = (ROOT / ".env.example").read_text()
    for line in example.splitlines():
        name = line.lstrip("# ").split("=", 1)[0]
        if "=" in line and name.isupper():
            assert name in known, name


def test_dockerfile_runs_real_commands() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gatrix"]' in text and 'CMD ["serve"]' in text
    assert "USER gatrix" in text and "HEALTHCHECK" in text and "/health" in text
    assert text.count("FROM ") == 2  # multi-stage
    build_parser().parse_args(["serve"])
    build_parser().parse_args(["worker"])
    for copied in re.findall(r"^COPY (?:--\S+ )*(\S+) ", text, flags=re.M):
        if not copied.startswith("/"):
            assert (ROOT / copied).exists(), copied
