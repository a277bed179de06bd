"""ClickHouse access: the only module that imports clickhouse-connect.

The DSN picks the engine: `chdb:///abs/path` runs ClickHouse in-process (embedded mode),
`http(s)://user:pass@host:port/db` talks to a server. chDB calls block and chDB allows one
data path per process, so embedded clients are shared per path and every call is serialised
behind one lock and run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from gatrix.clickhouse.cluster import clusterize
from gatrix.pageviews import CUSTOM_EVENT_SQL, PAGEVIEW_SQL
from gatrix.resources import clickhouse_migrations_dir

MIGRATIONS_DIR = clickhouse_migrations_dir()
PROJECT_TABLES = (
    "events",
    "profiles",
    "profile_counters",
    "identity_links",
    "identity_targets",
    "identity_map",
    "visitor_sessions",
    "sessions",
    "hourly",
    "page_hourly",
    "event_hourly",
    "visitor_hourly",
    "live_events",
    "session_hourly",
    "session_hours",
    "session_touches",
    "page_daily",
    "page_days",
    "page_touches",
    "total_daily",
    "total_days",
    "total_touches",
    "session_daily",
    "session_days",
    "session_day_touches",
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
T = TypeVar("T")

# chDB holds one data path per process: share the client and its lock per path.
_embedded: dict[str, tuple[Client, threading.Lock]] = {}
_embedded_guard = threading.Lock()

# Errors that mean "ClickHouse cannot take anything right now" rather than "this row is bad".
UNAVAILABLE_CODES = {
    60,  # UNKNOWN_TABLE (detached / dropped / not migrated yet)
    81,  # UNKNOWN_DATABASE
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    999,  # KEEPER_EXCEPTION
}


# What ClickHouse answers when a read passes one of its budget's limits.
BUDGET_CODES = {
    158: "rows",  # TOO_MANY_ROWS (max_rows_to_read)
    159: "time",  # TIMEOUT_EXCEEDED (max_execution_time)
    160: "time",  # TOO_SLOW: the estimated time passes max_execution_time before it runs
    241: "memory",  # MEMORY_LIMIT_EXCEEDED (max_memory_usage)
    307: "bytes",  # TOO_MANY_BYTES
    396: "rows",  # TOO_MANY_ROWS_OR_BYTES (the result's size)
}
MB = 1 << 20


@dataclass(frozen=True, slots=True)
class QueryBudget:
    """What one read may cost before ClickHouse stops it: wall time, rows read and memory.
    Zero means no limit. Spilling keeps big GROUP BYs and sorts working under the memory
    limit: past half of it they go to disk instead of failing (BENCHMARKS.md, "Query budgets
    and memory")."""

    seconds: float = 30.0
    rows: int = 1_000_000_000
    memory_mb: int = 2048

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seconds:
            out["max_execution_time"] = self.seconds
        if self.rows:
            out["max_rows_to_read"] = self.rows
        if self.memory_mb:
            out["max_memory_usage"] = self.memory_mb * MB
            out["max_bytes_before_external_group_by"] = self.memory_mb * MB // 2
            out["max_bytes_before_external_sort"] = self.memory_mb * MB // 2
        return out


class QueryTooHeavy(Exception):
    """A read passed its budget (`limit`: time, rows, bytes or memory). Nothing is wrong with
    the store: the question asks too much at once, and a narrower one will answer."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit

    @property
    def advice(self) -> str:
        what = {"time": "took too long", "memory": "needed too much memory"}.get(
            self.limit, "had to read too many rows"
        )
        return (
            f"This report {what} for the server's query budget: narrow the date range or "
            "add a filter, then ask again."
        )


class StoreUnavailable(Exception):
    """ClickHouse could not be reached or cannot accept writes; retry later."""


class RowsRejected(Exception):
    """ClickHouse refused the data itself (a parse or type error in some row)."""


def _error_code(exc: BaseException) -> int | None:
    match = re.search(r"Code: (\d+)", str(exc))
    return int(match.group(1)) if match else None


# Code 252 covers two different things: "too many parts" (merges lag behind: wait) and "too
# many partitions for single INSERT block" (this block's rows span too many months: the rows
# are the problem, and a smaller block goes in).
_REJECTED_MESSAGES = ("too many partitions for single insert block",)


def classify(exc: BaseException) -> Exception:
    message = str(exc)
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | OSError):
        return StoreUnavailable(message)
    if any(text in message.lower() for text in _REJECTED_MESSAGES):
        return RowsRejected(message)
    if isinstance(exc, DatabaseError) and _error_code(exc) in UNAVAILABLE_CODES:
        return StoreUnavailable(message)
    return RowsRejected(message)


class Store:
    def __init__(
        self,
        dsn: str,
        database: str = "gatrix",
        cluster: str = "",
        budget: QueryBudget | None = None,
    ) -> None:
        self.dsn = dsn
        # every read runs inside it unless its caller opts out (`bounded=False`)
        self.budget = budget or QueryBudget()
        self.embedded = dsn.startswith("chdb://")
        parts = urlsplit(dsn)
        if not self.embedded and parts.path.strip("/"):
            database = parts.path.strip("/")
            dsn = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
        if not _IDENT.match(database):
            raise ValueError(f"invalid ClickHouse database name: {database!r}")
        self.db = database
        self.cluster = cluster
        self._server_dsn = dsn
        self._client: Client | None = None
        self._lock = threading.Lock()

    # --- connection

    def _connect(self) -> Client:
        if self._client is not None:
            return self._client
        if self.embedded:
            path = self.dsn[len("chdb://") :]
            Path(path).mkdir(parents=True, exist_ok=True)
            with _embedded_guard:
                if path not in _embedded:
                    _embedded[path] = (
                        clickhouse_connect.get_client(dsn=self.dsn),
                        threading.Lock(),
                    )
                self._client, self._lock = _embedded[path]
        else:
            self._client = clickhouse_connect.get_client(
                dsn=self._server_dsn, connect_timeout=5, send_receive_timeout=60
            )
        return self._client

    def _call(self, fn: Callable[[Client], T]) -> T:
        try:
            client = self._connect()
        except Exception as exc:  # connection refused, DNS, auth...
            raise StoreUnavailable(str(exc)) from exc
        with self._lock:
            return fn(client)

    def close(self) -> None:
        # Embedded clients stay open for the life of the process (one path per process).
        if self._client is not None and not self.embedded:
            self._client.close()
        self._client = None

    # --- statements

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._call(lambda c: c.command(sql, parameters=parameters))

    def _read(self, fn: Callable[[Client], T]) -> T:
        try:
            return self._call(fn)
        except DatabaseError as exc:
            limit = BUDGET_CODES.get(_error_code(exc) or 0)
            if limit is None:
                raise
            raise QueryTooHeavy(limit, str(exc)) from exc

    def _limits(self, c: Client, settings: dict[str, Any] | None, bounded: bool) -> dict | None:
        """The statement's own settings over the budget's. Settings the server does not know
        are left out: they tune behaviour that a server without them does not have (the
        client read the server's settings when it connected, so this costs no query)."""
        merged = {**(self.budget.settings() if bounded else {}), **(settings or {})}
        known = {k: v for k, v in merged.items() if k in c.server_settings}
        return known or None

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None, bounded: bool = True
    ) -> list[tuple]:
        def run(c: Client) -> list[tuple]:
            limits = self._limits(c, None, bounded)
            return c.query(sql, parameters=parameters, settings=limits).result_rows

        return self._read(run)

    def query_dicts(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        bounded: bool = True,
    ) -> list[dict]:
        """Rows as dicts, the statement's `settings` added to the budget's."""

        def run(c: Client) -> list[dict]:
            limits = self._limits(c, settings, bounded)
            result = c.query(sql, parameters=parameters, settings=limits)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

        return self._read(run)

    def check(self) -> str:
        """ "ok" after a `SELECT 1`, or "busy" when the embedded engine is running another
        statement for a while: it is alive, and a health check must not queue behind a
        heavy report (it would time out and call a working server down). Raises when the
        engine cannot answer."""
        try:
            client = self._connect()
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not self._lock.acquire(timeout=0.5):
            return "busy"
        try:
            client.command("SELECT 1")
        finally:
            self._lock.release()
        return "ok"

    def ping(self) -> bool:
        try:
            self.command("SELECT 1")
            return True
        except Exception:
            return False

    def events_writable(self) -> bool:
        """The events table exists and answers: the check that tells bad rows from a bad store."""
        try:
            self.command(f"SELECT count() FROM {self.db}.events WHERE 0")
            return True
        except Exception:
            return False

    def insert_json_rows(self, table: str, rows: Sequence[bytes], token: str) -> None:
        """Insert JSONEachRow lines as one block; a retry with the same token stores nothing."""
        if rows:
            self.insert_json(table, b"\n".join(rows), token)

    def insert_json(self, table: str, body: bytes, token: str) -> None:
        """Insert a JSONEachRow body (rows separated by newlines) as one block, deduplicated
        by `token` like `insert_json_rows`."""
        if not _IDENT.match(table):
            raise ValueError(f"invalid table name: {table!r}")
        settings = {
            "insert_deduplication_token": token,
            # the rollups (materialized views) must skip a retried block too
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "input_format_skip_unknown_fields": 1,
            "date_time_input_format": "best_effort",
            # the rollups of a block are built side by side rather than in turn
            "parallel_view_processing": 1,
        }
        try:
            self._call(
                lambda c: c.raw_insert(
                    f"{self.db}.{table}", insert_block=body, fmt="JSONEachRow", settings=settings
                )
            )
        except (StoreUnavailable, RowsRejected):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def insert_arrow(self, table: str, stream: bytes, token: str) -> None:
        """Insert an Arrow IPC stream as one block, deduplicated by `token` like the JSON
        inserts. Bulk imports use it: ClickHouse reads Arrow several times faster than
        JSONEachRow (measured: 1M events, 3.7 s against 21 s without the rollups)."""
        if not _IDENT.match(table):
            raise ValueError(f"invalid table name: {table!r}")
        settings = {
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            # the four rollups of a block are built side by side rather than in turn
            "parallel_view_processing": 1,
        }
        try:
            self._call(
                lambda c: c.raw_insert(
                    f"{self.db}.{table}", insert_block=stream, fmt="ArrowStream", settings=settings
                )
            )
        except (StoreUnavailable, RowsRejected):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def query_raw(self, sql: str, parameters: dict[str, Any] | None, fmt: str) -> bytes:
        """A result in a ClickHouse output format (CSV, JSONEachRow, ArrowStream...), as the
        engine wrote it. Callers keep each statement bounded: the whole answer is in memory."""
        return self._call(lambda c: c.raw_query(sql, parameters=parameters, fmt=fmt))

    def delete_project(self, project_id: str) -> None:
        """Remove every row of a project from every table (waits for the mutations)."""
        for table in PROJECT_TABLES:
            self.command(
                f"ALTER TABLE {self.db}.{table} DELETE WHERE project_id = {{p:String}}",
                parameters={"p": project_id},
            )

    # --- schema

    def migration_statements(
        self, migrations_dir: Path = MIGRATIONS_DIR
    ) -> list[tuple[int, str, list[str]]]:
        """(version, name, statements) of every migration file, in cluster form when clustered."""
        out = []
        for path in sorted(migrations_dir.glob("[0-9][0-9][0-9][0-9]_*.sql")):
            statements = split_statements(
                Template(path.read_text()).substitute(
                    db=self.db, is_pageview=PAGEVIEW_SQL, is_custom=CUSTOM_EVENT_SQL
                )
            )
            if self.cluster:
                statements = [c for s in statements for c in clusterize(s, self.cluster)]
            out.append((int(path.name[:4]), path.stem, statements))
        return out

    def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        on_cluster = f" ON CLUSTER {self.cluster}" if self.cluster else ""
        engine = (
            f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{self.db}/schema_migrations', "
            "'{replica}')"
            if self.cluster
            else "MergeTree"
        )
        self.command(f"CREATE DATABASE IF NOT EXISTS {self.db}{on_cluster}")
        self.command(
            f"CREATE TABLE IF NOT EXISTS {self.db}.schema_migrations{on_cluster} "
            f"(version UInt32, name String, applied_at DateTime DEFAULT now()) "
            f"ENGINE = {engine} ORDER BY version"
        )
        done = {r[0] for r in self.query_rows(f"SELECT version FROM {self.db}.schema_migrations")}
        applied: list[str] = []
        for version, name, statements in self.migration_statements(migrations_dir):
            if version in done:
                continue
            for statement in statements:
                self.command(statement)
            self.command(
                f"INSERT INTO {self.db}.schema_migrations (version, name) VALUES "
                "({version:UInt32}, {name:String})",
                parameters={"version": version, "name": name},
            )
            applied.append(name)
        return applied


def split_statements(sql: str) -> list[str]:
    """Split a migration file on semicolons at line ends, dropping `--` comment lines."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]
