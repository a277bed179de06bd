"""`gatrix import` from a user's side: files it cannot read get one clear line and a non-zero
exit, never a traceback; a file of the wrong format says nothing was understood."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatrix import cli

from ..conftest import LiveServer


@pytest.fixture
def import_args(site: LiveServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    s = site.settings
    # the CLI reads the environment: point it at this server's databases
    monkeypatch.setenv("DATABASE_URL", s.database_dsn)
    monkeypatch.setenv("CLICKHOUSE_URL", s.clickhouse_dsn)
    monkeypatch.setenv("REDIS_URL", s.redis_dsn or "")
    from gatrix.meta.projects import create_project

    project = create_project(site.services.engine, f"imp {uuid.uuid4().hex[:6]}").project_id
    return ["import", "--project", project, "--data-dir", str(s.data_path)]


def test_a_broken_parquet_file_is_refused_in_one_line(
    import_args: list[str], tmp_path: Path, capsys: Any
) -> None:
    parquet = tmp_path / "export.parquet"
    parquet.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    assert cli.main([*import_args, "--format", "gatrix", str(parquet)]) == 1
    err = capsys.readouterr().err
    assert "could not be read as gatrix" in err and "Traceback" not in err
    # Parquet is our own export's format only
    assert cli.main([*import_args, "--format", "umami", str(parquet)]) == 2
    err = capsys.readouterr().err
    assert "not text" in err and "--format gatrix" in err and "Traceback" not in err


def test_a_parquet_export_comes_back_with_the_cli(
    site: LiveServer, import_args: list[str], tmp_path: Path, capsys: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    rows = pa.table(
        {
            "name": ["screen_view", "signup", "screen_view"],
            "created_at": pa.array([when, when, None], pa.timestamp("ms", "UTC")),
            "session_start": pa.array([when] * 3, pa.timestamp("ms", "UTC")),
            "session_id": ["s1", "s1", "s2"],
            "device_id": ["d1", "d1", "d2"],
            "path": ["/", "", "/x"],
            "properties": pa.array([[], [("plan", "pro")], []], pa.map_(pa.binary(), pa.binary())),
            "revenue": [0.0, 9.5, 0.0],
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(rows, path)
    assert cli.main([*import_args, "--format", "gatrix", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    # the row without a time is no event; the file's missing columns take their defaults
    assert (report["events"], report["dropped"]) == (2, {"invalid": 1})
    project = import_args[import_args.index("--project") + 1]
    stored = site.services.store.query_rows(
        "SELECT name, path, properties['plan'], revenue, country FROM gatrix.events "
        "WHERE project_id = {p:String} ORDER BY name",
        {"p": project},
    )
    assert [list(r) for r in stored] == [
        ["screen_view", "/", "", 0.0, ""],
        ["signup", "", "pro", 9.5, ""],
    ]


def test_a_file_of_another_format_says_nothing_was_read(
    import_args: list[str], tmp_path: Path, capsys: Any
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\nthis is not a data export\n")
    assert cli.main([*import_args, "--format", "umami", str(junk)]) == 1
    captured = capsys.readouterr()
    assert "nothing in these files reads as umami records" in captured.err
    assert "Traceback" not in captured.err
    good = tmp_path / "events.ndjson"
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    line = {"type": "track", "event": "x", "anonymousId": "a", "timestamp": when}
    good.write_text(json.dumps(line) + "\n")
    assert cli.main([*import_args, "--format", "segment", str(good)]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 1


def test_files_imported_before_in_another_list_say_so_and_store_nothing(
    site: LiveServer, import_args: list[str], tmp_path: Path, capsys: Any
) -> None:
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.ndjson"
        line = {"type": "track", "event": name, "anonymousId": name, "timestamp": when}
        path.write_text(json.dumps(line) + "\n")
        files.append(str(path))
    assert cli.main([*import_args, "--format", "segment", *files]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 2
    for again in (files[::-1], files[1:]):
        assert cli.main([*import_args, "--format", "segment", *again]) == 0
        captured = capsys.readouterr()
        assert "imported into this project before: nothing stored twice" in captured.err
        assert json.loads(captured.out)["events"] == 0
    project = import_args[import_args.index("--project") + 1]
    stored = site.services.store.query_rows(
        "SELECT count() FROM gatrix.events WHERE project_id = {p:String}", {"p": project}
    )
    assert stored[0][0] == 2


def test_import_and_export_into_a_data_directory_not_made_yet_say_there_is_no_project(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a new user's first command before `gatrix serve` ever ran: one line, not a traceback
    for name in ("DATABASE_URL", "CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    events = tmp_path / "events.ndjson"
    events.write_text('{"type":"track","event":"x","anonymousId":"a"}\n')
    common = ["--project", "demo", "--data-dir", str(data)]
    assert cli.main(["import", *common, "--format", "segment", str(events)]) == 2
    assert cli.main(["export", *common, "--format", "ndjson"]) == 2
    err = capsys.readouterr().err
    assert err.count("no project 'demo'") == 2 and "Traceback" not in err


def test_an_import_while_another_process_holds_the_embedded_engine_says_so(
    tmp_path: Path,
) -> None:
    """In embedded mode one process opens the data directory (here a stand-in for a running
    server): the import answers in two lines and exit code 1, not with a traceback."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    gatrix = [sys.executable, "-m", "gatrix.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CLICKHOUSE_URL")}
    made = subprocess.run(
        [*gatrix, "projects", "create", "--name", "held", "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    project = json.loads(made.stdout)["project_id"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gatrix.clickhouse.store import Store; "
            f"Store('chdb://{data}/clickhouse', 'gatrix').command('SELECT 1'); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        events = tmp_path / "events.ndjson"
        events.write_text('{"type":"track","event":"x","anonymousId":"a"}\n')
        args = ["import", "--project", project, "--format", "segment", "--data-dir", str(data)]
        imported = subprocess.run(
            [*gatrix, *args, str(events)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert imported.returncode == 1
    assert "error: ClickHouse is unavailable" in imported.stderr
    assert "admits one process per data directory" in imported.stderr
    assert "Traceback" not in imported.stderr
