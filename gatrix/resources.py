"""Where the product's own files are. Templates, static assets, migrations and the tracker
source live at the top of the repository and ship inside the wheel as the data packages
`gatrix.templates`, `gatrix.assets` and `gatrix.migrations` (see pyproject.toml), so an
installed package serves the same pages as a checkout, with no path into the source tree."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _directory(package: str) -> Path:
    # Wheels install unzipped, so each data package is a real directory: Jinja, the static
    # file router and Alembic all want a path.
    return Path(str(files(package)))


def templates_dir() -> Path:
    return _directory("gatrix.templates")


def assets_dir() -> Path:
    return _directory("gatrix.assets")


def clickhouse_migrations_dir() -> Path:
    return _directory("gatrix.migrations") / "clickhouse"


def sql_migrations_dir() -> Path:
    return _directory("gatrix.migrations") / "sql"


def tracker_source_path() -> Path:
    return assets_dir() / "tracker" / "op1.js"
