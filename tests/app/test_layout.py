"""The package stands on its own: every subpackage and data file ships in the wheel, and an
installed wheel, away from the checkout, serves pages, assets, the tracker and migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from ..conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gatrix").rglob("__init__.py")
    }
    assert found <= listed, f"subpackages missing from pyproject: {sorted(found - listed)}"
    data = {name for name in listed if name not in found}
    assert data == {"gatrix.templates", "gatrix.assets", "gatrix.migrations"}
    for name in data:
        folder = ROOT / config["package-dir"][name]
        assert (folder / "__init__.py").is_file(), folder


def test_an_installed_wheel_serves_everything_away_from_the_checkout(tmp_path: Path) -> None:
    wheels, target, data = tmp_path / "wheels", tmp_path / "site", tmp_path / "data"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    [wheel] = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env["PYTHONPATH"] = str(target)  # the installed copy wins over the checkout
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatrix.cli", "serve", "--port", str(port), "--data-dir", str(data)],
        cwd=tmp_path,  # not the checkout
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, timeout=60, interval=0.3), (tmp_path / "serve.log").read_text()
        assert "Create the administrator account" in httpx.get(f"{url}/setup").text
        assert httpx.get(f"{url}/assets/css/admin.css").status_code == 200
        assert httpx.get(f"{url}/op1.js").status_code == 200
        where = subprocess.run(
            [sys.executable, "-c", "import gatrix.resources as r; print(r.templates_dir())"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert where.stdout.strip().startswith(str(target))
        # password hashes, share tokens, salts and events: for the data dir's owner only
        assert data.stat().st_mode & 0o777 == 0o700
        assert (data / "gatrix.db").stat().st_mode & 0o077 == 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_one_definition_of_a_page_view_feeds_python_and_the_migrations() -> None:
    from gatrix.clickhouse.store import Store
    from gatrix.pageviews import CUSTOM_EVENT_SQL, PAGEVIEW_NAMES, PAGEVIEW_SQL

    raw = "\n".join(p.read_text() for p in (ROOT / "migrations" / "clickhouse").glob("*.sql"))
    assert not any(f"'{name}'" in raw for name in PAGEVIEW_NAMES), "a copied page-view rule"
    rendered = [
        statement
        for _, _, statements in Store("chdb:///unused", "g").migration_statements()
        for statement in statements
    ]
    uses = sum(statement.count(PAGEVIEW_SQL) for statement in rendered)
    # 0003's views, and 0006's versions of sessions_mv and hourly_mv
    assert uses == 12 and all("${" not in statement for statement in rendered)
    # what a custom event is (not a page view, not an engagement) comes from there too
    assert "__engagement" not in raw
    assert sum(statement.count(CUSTOM_EVENT_SQL) for statement in rendered) == 3
