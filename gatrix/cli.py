"""`gatrix serve | worker | migrate | projects create | projects retention | projects exclude |
admin create | deadletters | retention | export | import`.

Output meant for automation (e.g. `projects create`) is exactly one JSON line on stdout;
everything for humans goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from typing import Any

from gatrix.settings import Settings


def load_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    # `import --workers` means parsing processes, not server processes
    if getattr(args, "command", None) == "serve" and args.workers is not None:
        overrides["workers"] = args.workers
    return Settings(**overrides)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_migrate(settings: Settings) -> int:
    from gatrix.clickhouse.store import Store
    from gatrix.meta import models

    settings.data_path.mkdir(parents=True, exist_ok=True)
    models.migrate(models.make_engine(settings.database_dsn))
    applied = Store(
        settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_cluster
    ).migrate()
    _say(f"metadata database migrated; ClickHouse migrations applied: {applied or 'none'}")
    return 0


def ensure_default_project(settings: Settings) -> None:
    """First start with an empty database: create the "default" project and say its ids."""
    from sqlmodel import Session, select

    from gatrix.meta import models
    from gatrix.meta.projects import create_project

    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = models.make_engine(settings.database_dsn)
    models.migrate(engine)
    with Session(engine) as db:
        if db.exec(select(models.Project)).first() is not None:
            return
    created = create_project(engine, "default", origins=["*"], is_default=True)
    engine.dispose()
    _say("Created the default project (requests without a client id go here):")
    _say(
        json.dumps(
            {
                "project_id": created.project_id,
                "client_id": created.client_id,
                "client_secret": created.client_secret,
            }
        )
    )
    _say(
        "The client secret is shown only this once. This client is root: its secret reads "
        "every report and can erase people. Keep it for reading insights; for backends that "
        "send events, add a write client (Settings → Clients)."
    )


def cmd_serve(settings: Settings) -> int:
    import tempfile

    import uvicorn

    from gatrix.app import create_asgi
    from gatrix.ingest.listen import listening_socket, private_socket, server_config
    from gatrix.ingest.pool import PoolPlan
    from gatrix.ingest.siblings import server_tag

    if not settings.default_client_id:
        ensure_default_project(settings)
    try:
        sockets = [listening_socket(settings.host, settings.port, first=True)]
    except OSError as exc:
        _say(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
        return 1
    processes = settings.process_count
    plan = None
    private_dir = None
    if processes > 1:
        # the ingest processes forward the non-ingest paths here; a private directory keeps
        # the socket (and the peer address it vouches for) to this user
        private_dir = tempfile.mkdtemp(prefix="gatrix-")
        path = os.path.join(private_dir, "primary.sock")
        sockets.append(private_socket(path))
        plan = PoolPlan(count=processes - 1, primary_socket=path, server=server_tag())
    _say(
        f"Gatrix Analytics on http://{settings.host}:{settings.port} "
        f"({processes} process{'es' if processes > 1 else ''}, data in {settings.data_path})"
    )
    config = server_config(create_asgi(settings, owns_process=True, plan=plan))
    server = uvicorn.Server(config)
    try:
        server.run(sockets=sockets)
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
    return 0 if server.started else 1


def cmd_worker(settings: Settings) -> int:
    from gatrix.services import (
        connect_redis,
        make_flusher,
        open_store,
        retention_job,
        sealing_job,
    )

    async def run() -> None:
        from gatrix.buffer.keys import RedisKeys
        from gatrix.buffer.queue import Buffer
        from gatrix.buffer.worker import make_queue, make_worker
        from gatrix.meta import models

        if settings.redis_embedded:
            raise SystemExit("gatrix worker needs REDIS_URL (or REDIS_HOST): it is for server mode")
        store = open_store(settings)
        if settings.auto_migrate:
            await asyncio.to_thread(store.migrate)
        redis = connect_redis(settings.redis_dsn)
        buffer = Buffer(redis, settings.redis_prefix)
        queue = make_queue(redis, RedisKeys(settings.redis_prefix).queue_name)
        await queue.connect()
        flusher = make_flusher(settings, buffer, store)
        engine = models.make_engine(settings.database_dsn)
        worker = make_worker(
            queue,
            flusher,
            embedded=False,
            interval=settings.flush_interval,
            keep=retention_job(engine, store),
            seal=sealing_job(store),
        )
        _say(f"gatrix worker flushing {settings.redis_dsn} → {store.dsn.split('@')[-1]}")
        await worker.start()
        await flusher.run(max_seconds=10.0)  # drain what is claimable before exiting
        await redis.aclose()

    asyncio.run(run())
    return 0


def cmd_projects_create(settings: Settings, args: argparse.Namespace) -> int:
    from gatrix.meta import models
    from gatrix.meta.projects import create_project

    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = models.make_engine(settings.database_dsn)
    models.migrate(engine)
    try:
        created = create_project(
            engine, args.name, origins=args.origin or [], timezone=args.timezone, kind=args.kind
        )
    except ValueError as exc:
        _say(f"error: {exc}")
        return 2
    print(
        json.dumps(
            {
                "project_id": created.project_id,
                "client_id": created.client_id,
                "client_secret": created.client_secret,
            }
        ),
        flush=True,
    )
    return 0


def _metadata(settings: Settings) -> Any:
    from gatrix.meta import models

    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = models.make_engine(settings.database_dsn)
    models.migrate(engine)
    return engine


def cmd_projects_retention(settings: Settings, args: argparse.Namespace) -> int:
    from gatrix.meta.accounts import AccountError
    from gatrix.meta.keeping import parse_days, set_retention

    try:
        days = parse_days(args.days)
        set_retention(_metadata(settings), args.project, days)
    except AccountError as exc:
        _say(f"error: {exc}")
        return 2
    print(json.dumps({"project_id": args.project, "retention_days": days}), flush=True)
    return 0


def cmd_projects_exclude(settings: Settings, args: argparse.Namespace) -> int:
    from gatrix.meta.accounts import AccountError
    from gatrix.meta.keeping import keeping, set_exclusions

    engine = _metadata(settings)
    rules: dict[str, str | list[str]] = {
        "ips": args.exclude_ips or [],
        "hosts": args.exclude_hosts or [],
        "paths": args.exclude_paths or [],
    }
    try:
        set_exclusions(engine, args.project, rules)
    except AccountError as exc:
        _say(f"error: {exc}")
        return 2
    view = keeping(engine, args.project) or {"exclusions": {}}
    saved = {kind: text.splitlines() for kind, text in view["exclusions"].items()}
    print(json.dumps({"project_id": args.project, **saved}), flush=True)
    return 0


async def retention_in_server(url: str, prefix: str, only: str | None) -> list[Any] | None:
    """Have the worker of the server whose Redis is at `url` run the retention pass and wait
    for it; None when no server answers there."""
    from redis.asyncio import Redis

    from gatrix.buffer.keys import RedisKeys
    from gatrix.buffer.worker import RETENTION_TIMEOUT_S, make_queue

    probe = Redis.from_url(url, socket_connect_timeout=2)
    try:
        await probe.ping()
    except Exception:
        return None
    finally:
        await probe.aclose()
    queue = make_queue(Redis.from_url(url), RedisKeys(prefix).queue_name)
    await queue.connect()
    try:
        return await queue.apply("retention", timeout=RETENTION_TIMEOUT_S, only=only)
    finally:
        await queue.disconnect()


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """Run the retention pass now: here, or in the running embedded server (chDB admits one
    process per data directory, so that server's worker must do it)."""
    from datetime import UTC, datetime

    from gatrix.meta.keeping import keeping
    from gatrix.services import open_store, retention_job

    if args.project:
        kept = keeping(_metadata(settings), args.project)
        if kept is None:
            _say(f"error: unknown project {args.project!r}")
            return 2
        if not kept["retention_days"]:
            _say(f"project {args.project!r} keeps everything (retention 0): nothing to cut")

    async def here() -> list[dict[str, Any]]:
        store = open_store(settings)
        if settings.auto_migrate:
            await asyncio.to_thread(store.migrate)
        done = await retention_job(_metadata(settings), store)(datetime.now(UTC), args.project)
        return [r.summary() for r in done]

    results = None
    if settings.redis_embedded and settings.clickhouse_dsn.startswith("chdb://"):
        from gatrix.buffer.embedded import EmbeddedRedis

        url = EmbeddedRedis(settings.data_path).locate()
        results = asyncio.run(retention_in_server(url, settings.redis_prefix, args.project))
    if results is None:
        results = asyncio.run(here())
    for result in results:
        print(json.dumps(result), flush=True)
    _say(f"retention applied to {len(results)} project(s) with a retention")
    return 0


def cmd_deadletters(settings: Settings, args: argparse.Namespace) -> int:
    """List rows ClickHouse refused (one JSON line each), or put them back into the buffer."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from gatrix.buffer.embedded import EmbeddedRedis
    from gatrix.buffer.queue import Buffer

    url = settings.redis_dsn or EmbeddedRedis(settings.data_path).locate()

    async def run() -> int:
        buffer = Buffer(Redis.from_url(url), settings.redis_prefix)
        try:
            if args.replay:
                moved = await buffer.replay_dead_letters(args.limit)
                print(json.dumps({"replayed": moved}), flush=True)
            else:
                records = await buffer.dead_letters(args.limit)
                for record in records:
                    print(json.dumps(record), flush=True)
                _say(f"{len(records)} dead letter(s) shown")
        finally:
            await buffer.redis.aclose()
        return 0

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as exc:
        _say(f"error: cannot reach the buffer's Redis ({exc}); is `gatrix serve` running?")
        return 1


def _project_timezone(settings: Settings, project_id: str) -> str | None:
    from gatrix.meta import accounts

    # a data directory not made yet (no `gatrix serve` so far) has no project: say so
    engine = _metadata(settings)
    try:
        project = accounts.project_summary(engine, project_id)
    finally:
        engine.dispose()
    return project["timezone"] if project else None


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Raw events or profiles to a file (or stdout), page by page: memory stays flat."""
    from datetime import UTC, datetime

    from gatrix.insights.filters import InvalidFilter
    from gatrix.insights.query import InvalidQuery, QueryParams, build_query
    from gatrix.portability.export import InvalidExport, check, export
    from gatrix.services import open_store

    timezone = _project_timezone(settings, args.project)
    if timezone is None:
        _say(f"error: no project {args.project!r}")
        return 2
    try:
        check(args.format, args.kind)
        params = QueryParams(
            range=args.range, start=args.start, end=args.end, filters=args.filter or []
        )
        query = build_query(args.project, timezone, params, datetime.now(UTC))
    except (InvalidExport, InvalidQuery, InvalidFilter) as exc:
        _say(f"error: {exc}")
        return 2
    store = open_store(settings)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        for part in export(store, query, args.format, args.kind):
            out.write(part)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from gatrix.portability.chunks import is_parquet
    from gatrix.portability.importer import run_import
    from gatrix.services import open_store

    if _project_timezone(settings, args.project) is None:
        _say(f"error: no project {args.project!r}")
        return 2
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        _say(f"error: no such file: {', '.join(missing)}")
        return 2
    # our own Parquet export comes back with --format gatrix; any other binary file is refused
    parquet_ok = args.format == "gatrix"
    unreadable = [str(p) for p in paths if _binary(p) and not (parquet_ok and is_parquet(p))]
    if unreadable:
        _say(
            f"error: {', '.join(unreadable)}: not text (only a Gatrix Parquet export is read "
            "back, with --format gatrix)"
        )
        return 2
    store = open_store(settings)
    if settings.auto_migrate:
        store.migrate()
    try:
        report = run_import(
            store,
            settings.data_path / "imports",
            args.project,
            args.format,
            paths,
            geoip_path=settings.geoip_path,
            workers=args.workers,
            stop_after=args.stop_after,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        _say(f"error: the files could not be read as {args.format}: {exc}")
        return 1
    if report.already_done:
        _say("this import was done before: nothing stored twice")
    elif report.chunks and report.stored_before == report.chunks:
        _say("these files were imported into this project before: nothing stored twice")
    elif not report.events and not report.profiles and not any(report.others.values()):
        why = f" ({', '.join(f'{k}: {n}' for k, n in report.dropped.items())} dropped)"
        _say(
            f"error: nothing in these files reads as {args.format} records"
            f"{why if report.dropped else ''}"
        )
        return 1
    print(
        json.dumps(
            {
                "import_id": report.import_id,
                "events": report.events,
                "profiles": report.profiles,
                "links": report.others.get("identity_links", 0),
                "counters": report.others.get("profile_counters", 0),
                "dropped": report.dropped,
                "complete": report.complete,
                # parts of these files an earlier import stored (or repeats): not stored again
                "skipped_chunks": report.stored_before,
                "seconds": round(report.seconds, 2),
            }
        ),
        flush=True,
    )
    return 0


def _binary(path: Any) -> bool:
    """A file that is not UTF-8 text in its first block (Parquet starts with `PAR1`)."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1") or b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a character cut by the block's end is fine
    return False


def cmd_admin_create(settings: Settings, args: argparse.Namespace) -> int:
    from gatrix.meta import accounts, models

    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = models.make_engine(settings.database_dsn)
    models.migrate(engine)
    try:
        user = accounts.create_user(engine, args.email, args.password, is_admin=True)
    except accounts.AccountError as exc:
        _say(f"error: {exc}")
        return 2
    print(json.dumps({"user_id": user.id, "email": user.email}), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatrix", description="Gatrix Analytics server")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", dest="data_dir", default=None)

    serve = sub.add_parser("serve", help="web server (+ in-process flush worker when embedded)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers", type=int, default=None, help="processes (default: one per core)"
    )
    common(serve)
    common(sub.add_parser("worker", help="flush worker alone (server mode)"))
    common(sub.add_parser("migrate", help="apply metadata and ClickHouse migrations"))

    projects = sub.add_parser("projects", help="manage projects").add_subparsers(
        dest="projects_command", required=True
    )
    create = projects.add_parser("create", help="create a project and its root client")
    create.add_argument("--name", required=True)
    create.add_argument("--origin", action="append", help="allowed origin (repeatable)")
    create.add_argument("--timezone", default="UTC")
    create.add_argument("--kind", default="website", choices=["website", "app", "backend"])
    common(create)
    retention = projects.add_parser("retention", help="days of events to keep (0: forever)")
    retention.add_argument("--project", required=True)
    retention.add_argument("--days", required=True)
    common(retention)
    exclude = projects.add_parser("exclude", help="replace the project's traffic exclusions")
    exclude.add_argument("--project", required=True)
    # dests of their own: `host` is the serve option load_settings reads
    exclude.add_argument(
        "--ip", dest="exclude_ips", action="append", help="address or CIDR range (repeatable)"
    )
    exclude.add_argument(
        "--host", dest="exclude_hosts", action="append", help="page host or *.domain (repeatable)"
    )
    exclude.add_argument(
        "--path", dest="exclude_paths", action="append", help="page path glob (repeatable)"
    )
    common(exclude)

    keep = sub.add_parser("retention", help="delete events older than each retention, now")
    keep.add_argument("--project", default=None, help="only this project")
    common(keep)

    dead = sub.add_parser("deadletters", help="rows ClickHouse refused: list or replay")
    common(dead)
    dead.add_argument("--replay", action="store_true", help="move them back into the buffer")
    dead.add_argument("--limit", type=int, default=1000)
    exp = sub.add_parser("export", help="raw events or profiles of a project to a file")
    exp.add_argument("--project", required=True)
    exp.add_argument("--format", default="ndjson", choices=["csv", "ndjson", "parquet"])
    exp.add_argument(
        "--kind", default="events", choices=["events", "profiles", "links", "counters"]
    )
    exp.add_argument("--range", default="all", help="a named range (default all) or custom")
    exp.add_argument("--start", default=None)
    exp.add_argument("--end", default=None)
    exp.add_argument("--filter", action="append", help="dimension:operator:value (repeatable)")
    exp.add_argument("--output", default=None, help="file to write (default: stdout)")
    common(exp)
    imp = sub.add_parser("import", help="events from files, straight into ClickHouse")
    imp.add_argument("--project", required=True)
    imp.add_argument("--format", required=True, choices=["gatrix", "umami", "segment"])
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--workers", type=int, default=None, help="parsing processes (default: cores)")
    imp.add_argument(
        "--stop-after",
        dest="stop_after",
        type=int,
        default=None,
        help="stop once N events are in; the same command later resumes",
    )
    common(imp)
    admin = sub.add_parser("admin", help="manage users").add_subparsers(
        dest="admin_command", required=True
    )
    admin_create = admin.add_parser("create", help="create an administrator account")
    admin_create.add_argument("--email", required=True)
    admin_create.add_argument("--password", required=True)
    common(admin_create)

    return parser


def _env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable a settings error is about (the field name when unknown)."""
    field = Settings.model_fields.get(str(loc[0])) if loc else None
    alias = field.validation_alias if field is not None else None
    choices = getattr(alias, "choices", None)
    return str(choices[0]) if choices else ".".join(map(str, loc)) or "settings"


def _with_store(command: Any, settings: Settings, args: argparse.Namespace) -> int:
    """Run a command that opens ClickHouse; one that cannot be opened (in embedded mode: a
    server or another import holds the data directory) is one line, not a traceback."""
    from gatrix.clickhouse.store import StoreUnavailable

    try:
        return int(command(settings, args))
    except StoreUnavailable as exc:
        _say(f"error: ClickHouse is unavailable: {str(exc).splitlines()[0][:300]}")
        if settings.clickhouse_dsn.startswith("chdb://"):
            _say(
                "the embedded engine admits one process per data directory: stop `gatrix "
                "serve` (or the other import or export) first, or use the export endpoint"
            )
        return 1


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    # what we write (SQLite with password hashes and salts, chDB's files) is ours alone
    os.umask(0o077)
    try:
        settings = load_settings(args)
    except ValidationError as exc:
        for problem in exc.errors():
            _say(f"error: {_env_name(problem['loc'])}: {problem['msg']}")
        _say("see the settings table in README.md")
        return 2
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "worker":
        return cmd_worker(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "admin":
        return cmd_admin_create(settings, args)
    if args.command == "deadletters":
        return cmd_deadletters(settings, args)
    if args.command == "retention":
        return cmd_retention(settings, args)
    if args.command == "projects" and args.projects_command == "retention":
        return cmd_projects_retention(settings, args)
    if args.command == "projects" and args.projects_command == "exclude":
        return cmd_projects_exclude(settings, args)
    if args.command in ("export", "import"):
        return _with_store(cmd_export if args.command == "export" else cmd_import, settings, args)
    if args.command == "projects":
        return cmd_projects_create(settings, args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
