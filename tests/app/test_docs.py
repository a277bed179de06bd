"""The README documents every setting the code reads, and the CLI commands it promises."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gatrix.cli import build_parser
from gatrix.settings import Settings, env_names
from tools.bench.__main__ import build_parser as build_bench_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    table_names = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", README, flags=re.MULTILINE))
    missing = env_names() - table_names
    assert not missing, f"settings missing from README's table: {sorted(missing)}"
    unknown = table_names - env_names()
    assert not unknown, f"README documents settings the code does not read: {sorted(unknown)}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_url_forms_and_seed_names_resolve() -> None:
    s = Settings(
        clickhouse_url="",
        redis_url="",
        database_url="",
        clickhouse_host="ch",
        clickhouse_port=8123,
        clickhouse_database="analytics",
        clickhouse_user="u",
        clickhouse_password="p@ss",
        redis_host="r",
        redis_port=6380,
        mysql_host="db",
        mysql_user="g",
        mysql_password="pw",
        mysql_database="meta",
    )
    assert s.clickhouse_dsn == "http://u:p%40ss@ch:8123/analytics"
    assert s.redis_dsn == "redis://r:6380/0"
    assert s.database_dsn == "mysql+pymysql://g:pw@db:3306/meta?charset=utf8mb4"
    embedded = Settings(
        data_dir=Path("/srv/data"),
        clickhouse_url="",
        clickhouse_host="",
        redis_url="",
        redis_host="",
        database_url="",
        mysql_host="",
    )
    assert embedded.clickhouse_dsn == "chdb:///srv/data/clickhouse"
    assert embedded.redis_embedded and embedded.database_dsn == "sqlite:////srv/data/gatrix.db"


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_cli_commands_parse_and_match_the_readme() -> None:
    parser = build_parser()
    serve = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "1", "--data-dir", "d"])
    assert (serve.command, serve.host, serve.port, serve.data_dir) == ("serve", "0.0.0.0", 1, "d")
    create = parser.parse_args(["projects", "create", "--name", "n", "--origin", "o"])
    assert (create.name, create.origin) == ("n", ["o"])
    dead = parser.parse_args(["deadletters", "--replay", "--limit", "5"])
    assert (dead.replay, dead.limit) == (True, 5)
    bench = build_bench_parser().parse_args(["ingest", "--seconds", "1", "--output", "f"])
    assert (bench.seconds, bench.output) == (1.0, "f")
    # every command the README's command-line section names exists, and the other way round
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^gatrix (\w+)", section, re.M))
    assert named == _subcommands(parser)
    benches = set(re.findall(r"^python -m tools\.bench (\w+)", section, re.M))
    assert benches == _subcommands(build_bench_parser())


@pytest.mark.fast
def test_a_containers_cpu_quota_bounds_the_default_process_count(tmp_path: Path) -> None:
    from gatrix.settings import _cgroup_cpu_quota

    limits = {"max 100000": None, "150000 100000": 2, "50000 100000": 1, "": None, "x y": None}
    for text, cpus in limits.items():
        (tmp_path / "cpu.max").write_text(text)
        assert _cgroup_cpu_quota(tmp_path / "cpu.max") == cpus, text
    assert _cgroup_cpu_quota(tmp_path / "missing") is None
    assert Settings(workers=3).process_count == 3
    assert 1 <= Settings().process_count <= 8
