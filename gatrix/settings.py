"""Settings: the only module that reads the environment.

Every field carries the environment variable(s) it is read from; README's settings table is
checked against this list by a test, so a new field without documentation fails the suite.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_FRAME_SOURCE = re.compile(r"\*|'self'|https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?")


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # --- where and how we listen
    host: str = Field("127.0.0.1", validation_alias=_env("GATRIX_HOST"))
    port: int = Field(3002, validation_alias=_env("PORT", "GATRIX_PORT"))
    data_dir: Path = Field(Path("data"), validation_alias=_env("GATRIX_DATA_DIR"))
    public_url: str = Field("", validation_alias=_env("GATRIX_PUBLIC_URL"))
    log_level: str = Field("info", validation_alias=_env("GATRIX_LOG_LEVEL"))
    log_format: str = Field("text", validation_alias=_env("GATRIX_LOG_FORMAT"))
    # served under a path prefix, e.g. /api/v1/analytics behind the Gatrix backend
    root_path: str = Field("", validation_alias=_env("GATRIX_ROOT_PATH"))
    # processes of `gatrix serve`: the primary plus (workers - 1) ingest processes; 0 = one per
    # core the process may use
    workers: int = Field(0, ge=0, le=64, validation_alias=_env("GATRIX_WORKERS"))

    # --- ClickHouse: a URL, or the seed's host/port/database names, or embedded chDB
    clickhouse_url: str = Field("", validation_alias=_env("CLICKHOUSE_URL"))
    clickhouse_host: str = Field("", validation_alias=_env("CLICKHOUSE_HOST"))
    clickhouse_port: int = Field(8123, validation_alias=_env("CLICKHOUSE_PORT"))
    clickhouse_database: str = Field("gatrix", validation_alias=_env("CLICKHOUSE_DATABASE"))
    clickhouse_user: str = Field("default", validation_alias=_env("CLICKHOUSE_USER"))
    clickhouse_password: str = Field("", validation_alias=_env("CLICKHOUSE_PASSWORD"))
    clickhouse_cluster: str = Field("", validation_alias=_env("GATRIX_CLICKHOUSE_CLUSTER"))
    # every report's budget (0: no limit); past it the report answers "too heavy", not a 500
    query_max_seconds: float = Field(30.0, ge=0, validation_alias=_env("GATRIX_QUERY_MAX_SECONDS"))
    query_max_rows: int = Field(1_000_000_000, ge=0, validation_alias=_env("GATRIX_QUERY_MAX_ROWS"))
    query_max_memory_mb: int = Field(
        2048, ge=0, validation_alias=_env("GATRIX_QUERY_MAX_MEMORY_MB")
    )
    # report reads handed to the store at once (0: 2; the store runs one at a time);
    # a caller's reads past `query_queue` waiting get 429, and a read that waited
    # `query_wait_seconds` gets 503 (see gatrix/insights/admission.py)
    query_slots: int = Field(0, ge=0, le=64, validation_alias=_env("GATRIX_QUERY_SLOTS"))
    query_queue: int = Field(32, ge=1, le=10_000, validation_alias=_env("GATRIX_QUERY_QUEUE"))
    query_wait_seconds: float = Field(
        30.0, gt=0, validation_alias=_env("GATRIX_QUERY_WAIT_SECONDS")
    )

    # --- Redis: a URL, or host/port, or the embedded server
    redis_url: str = Field("", validation_alias=_env("REDIS_URL"))
    redis_host: str = Field("", validation_alias=_env("REDIS_HOST"))
    redis_port: int = Field(6379, validation_alias=_env("REDIS_PORT"))
    redis_prefix: str = Field("gatrix", validation_alias=_env("GATRIX_REDIS_PREFIX"))

    # --- metadata database: a URL, or the seed's MySQL names, or SQLite in the data dir
    database_url: str = Field("", validation_alias=_env("DATABASE_URL"))
    mysql_host: str = Field("", validation_alias=_env("MYSQL_HOST"))
    mysql_port: int = Field(3306, validation_alias=_env("MYSQL_PORT"))
    mysql_database: str = Field("gatrix", validation_alias=_env("MYSQL_DATABASE"))
    mysql_user: str = Field("root", validation_alias=_env("MYSQL_USER"))
    mysql_password: str = Field("", validation_alias=_env("MYSQL_PASSWORD"))

    # --- ingestion
    default_client_id: str = Field("", validation_alias=_env("GATRIX_DEFAULT_CLIENT_ID"))
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("GATRIX_TRUSTED_PROXIES")
    )
    geoip_path: str = Field("", validation_alias=_env("GATRIX_GEOIP_PATH"))
    max_body_bytes: int = Field(65536, validation_alias=_env("GATRIX_MAX_BODY_BYTES"))
    # client timestamps older than this many days are dropped (reason timestamp_too_old)
    max_event_age_days: int = Field(31, ge=1, validation_alias=_env("GATRIX_MAX_EVENT_AGE_DAYS"))
    # a Segment messageId is remembered this long: a retry within it is stored once
    message_dedup_hours: int = Field(
        24, ge=1, le=24 * 31, validation_alias=_env("GATRIX_MESSAGE_DEDUP_HOURS")
    )

    # --- the Redis buffer's bounds
    # the embedded Redis's memory cap; it never evicts, it refuses writes at the cap
    buffer_max_mb: int = Field(512, ge=16, validation_alias=_env("GATRIX_BUFFER_MAX_MB"))
    # over this many MB of buffered events /track answers 503 with Retry-After
    buffer_high_water_mb: int = Field(
        256, ge=1, validation_alias=_env("GATRIX_BUFFER_HIGH_WATER_MB")
    )

    # --- flushing the buffer into ClickHouse
    flush_interval: float = Field(1.0, validation_alias=_env("GATRIX_FLUSH_INTERVAL"))
    # rows per ClickHouse insert: each insert also writes every rollup, so a large one costs
    # far less per row (measured 10k → 50k: the flush went from ~0.4 to ~0.75 of a plain insert)
    flush_batch_size: int = Field(50_000, ge=1, validation_alias=_env("GATRIX_FLUSH_BATCH_SIZE"))
    # a claimed batch whose flusher stopped renewing it this long ago is retried by another
    flush_lease_seconds: float = Field(
        5.0, gt=0, validation_alias=_env("GATRIX_FLUSH_LEASE_SECONDS")
    )
    embedded_worker: bool = Field(True, validation_alias=_env("GATRIX_EMBEDDED_WORKER"))
    auto_migrate: bool = Field(True, validation_alias=_env("GATRIX_AUTO_MIGRATE"))

    # --- web security: which Host headers may name us, who may frame share pages, /metrics
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("GATRIX_ALLOWED_HOSTS")
    )
    share_frame_ancestors: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("GATRIX_SHARE_FRAME_ANCESTORS")
    )
    metrics_token: str = Field("", validation_alias=_env("GATRIX_METRICS_TOKEN"))

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for cidr in value:
                ipaddress.ip_network(cidr, strict=False)  # reject typos at startup
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [str(part).strip().strip("[]").lower() for part in value]
            value = [part for part in value if part]
        return value

    @field_validator("share_frame_ancestors", mode="before")
    @classmethod
    def _split_ancestors(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for source in value:
                # each entry lands in a CSP header: a stray ';' or space would rewrite the policy
                if not _FRAME_SOURCE.fullmatch(str(source)):
                    raise ValueError(f"not an origin for frame-ancestors: {source!r}")
        return value

    @field_validator("root_path")
    @classmethod
    def _clean_root(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

    @model_validator(mode="after")
    def _buffer_bounds(self) -> Settings:
        if self.redis_embedded and self.buffer_high_water_mb >= self.buffer_max_mb:
            raise ValueError(
                "GATRIX_BUFFER_HIGH_WATER_MB must be below GATRIX_BUFFER_MAX_MB, or the "
                "embedded Redis fills before /track pushes back"
            )
        return self

    @property
    def process_count(self) -> int:
        """How many processes `gatrix serve` runs: GATRIX_WORKERS, or the cores this process
        may use (its CPU affinity, and a container's CPU quota when one is set), at most 8."""
        if self.workers:
            return self.workers
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        quota = _cgroup_cpu_quota()
        if quota is not None:
            cores = min(cores, quota)
        return max(1, min(cores, 8))

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        if self.clickhouse_host:
            auth = quote(self.clickhouse_user, safe="")
            if self.clickhouse_password:
                auth += ":" + quote(self.clickhouse_password, safe="")
            return (
                f"http://{auth}@{self.clickhouse_host}:{self.clickhouse_port}"
                f"/{self.clickhouse_database}"
            )
        return f"chdb://{self.data_path / 'clickhouse'}"

    @property
    def clickhouse_embedded(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def redis_embedded(self) -> bool:
        return not (self.redis_url or self.redis_host)

    @property
    def redis_dsn(self) -> str:
        """The configured Redis URL; empty means 'start the embedded server'."""
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            return f"redis://{self.redis_host}:{self.redis_port}/0"
        return ""

    @property
    def database_dsn(self) -> str:
        if self.database_url:
            return self.database_url
        if self.mysql_host:
            auth = quote(self.mysql_user, safe="")
            if self.mysql_password:
                auth += ":" + quote(self.mysql_password, safe="")
            return (
                f"mysql+pymysql://{auth}@{self.mysql_host}:{self.mysql_port}"
                f"/{self.mysql_database}?charset=utf8mb4"
            )
        return f"sqlite:///{self.data_path / 'gatrix.db'}"

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def host_names(self) -> frozenset[str]:
        """Host header names believed when GATRIX_PUBLIC_URL is unset (see README)."""
        if self.allowed_hosts:
            return frozenset(self.allowed_hosts)
        return frozenset({"localhost", "127.0.0.1", "::1", self.host.strip("[]").lower()})


def _cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """A container's CPU limit in whole CPUs (cgroup v2 `cpu.max`: "quota period"), rounded
    up; None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, -(-int(quota) // int(period)))


def env_names() -> set[str]:
    """Every environment variable the settings read (the README table must list them all)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
    return names
