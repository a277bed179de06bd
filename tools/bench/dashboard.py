"""`python -m tools.bench dashboard`: time to the first chart and bytes transferred, first and
repeat load, of the dashboard over 1M synthetic events, in headless Chromium.

The events are generated (as in `bench insights`) by a separate process into a fresh data
dir, then `gatrix serve` runs on it; the benchmark never opens the chDB path itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tools.bench.processes import embedded_env, free_port

UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
GENERATE = """
import sys
from datetime import UTC, datetime
from tools.bench.insights import generate
from gatrix.clickhouse.store import Store
store = Store("chdb://" + sys.argv[1] + "/clickhouse", "gatrix")
store.migrate()
generate(store, int(sys.argv[2]), datetime.now(UTC).replace(microsecond=0))
print(store.query_rows("SELECT count() FROM gatrix.events")[0][0])
"""


def _cli(data: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gatrix.cli", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=embedded_env(),
        check=True,
        timeout=120,
    )
    return out.stdout


def _measure(url: str, email: str, password: str, project: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(user_agent=UA)
        page = context.new_page()
        page.goto(f"{url}/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/projects")
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        received: list[float] = []
        cdp.on("Network.loadingFinished", lambda e: received.append(e["encodedDataLength"]))
        loads = []
        for label in ("first", "repeat"):
            received.clear()
            started = time.perf_counter()
            page.goto(f"{url}/dashboard/{project}?range=30d", wait_until="commit")
            page.wait_for_selector("#main-chart .main-svg", timeout=60_000)
            first_chart_s = time.perf_counter() - started
            page.wait_for_load_state("networkidle")
            loads.append(
                {
                    "load": label,
                    "first_chart_s": round(first_chart_s, 3),
                    "bytes": int(sum(received)),
                    "requests": len(received),
                }
            )
        swaps = _swaps(page, f"{url}/dashboard/{project}?range=30d")
        browser.close()
    return {"loads": loads, "swaps": swaps}


SETTLED = ".htmx-request, .htmx-swapping, .htmx-settling, .panel.loading"


def _swaps(page: Any, start_url: str) -> list[dict[str, Any]]:
    """htmx swaps, timed from the user's action to the new numbers settled in the page."""
    import re

    def timed(action: Any, url_pattern: str) -> tuple[float, float]:
        # htmx moves the address bar once the new numbers are in; the panels come after
        started = time.perf_counter()
        action()
        page.wait_for_url(re.compile(url_pattern))
        numbers = time.perf_counter() - started
        page.wait_for_selector(SETTLED, state="detached")
        return numbers, time.perf_counter() - started

    steps = [
        ("range 30d → 7d", lambda: page.select_option("#range", "7d"), r"range=7d"),
        ("range 7d → 30d", lambda: page.select_option("#range", "30d"), r"range=30d"),
        (
            "filter: first referrer row",
            lambda: page.click("#panel-sources a.row-filter >> nth=0"),
            r"filter=",
        ),
        ("remove the filter", lambda: page.click(".chips a.chip"), r"^(?!.*filter=)"),
        (
            "tab: entry pages",
            lambda: page.click("#panel-pages a[role=tab] >> nth=1"),
            r"tab_pages=entry",
        ),
        ("KPI card: page views", lambda: page.click("[data-kpi='pageviews']"), r"metric="),
    ]
    by_label: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        page.goto(start_url)
        page.wait_for_selector("#main-chart .main-svg", timeout=60_000)
        page.wait_for_selector(SETTLED, state="detached")
        for label, action, pattern in steps:
            by_label.setdefault(label, []).append(timed(action, pattern))
    return [
        {
            "swap": label,
            "numbers_ms": round(sorted(t[0] for t in times)[1] * 1000),
            "settled_ms": round(sorted(t[1] for t in times)[1] * 1000),
            "runs": len(times),
        }
        for label, times in by_label.items()
    ]


def run_dashboard_bench(args: Any) -> int:
    events = int(getattr(args, "events", None) or 1_000_000)
    data = Path(tempfile.mkdtemp(prefix="gatrix-bd-"))
    port = free_port()
    serve = None
    try:
        _cli(data, "projects", "create", "--name", "bench")
        _cli(
            data,
            "admin",
            "create",
            "--email",
            "bench@gatrix.test",
            "--password",
            "bench-password-1",
        )
        out = subprocess.run(
            [sys.executable, "-c", GENERATE, str(data), str(events)],
            capture_output=True,
            text=True,
            env=embedded_env(),
            check=True,
            timeout=900,
        )
        rows = int(out.stdout.strip().splitlines()[-1])
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatrix.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            env=embedded_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        report = {"events": rows, **_measure(url, "bench@gatrix.test", "bench-password-1", "bench")}
    finally:
        if serve is not None:
            os.kill(serve.pid, signal.SIGTERM)
            serve.wait(60)
        shutil.rmtree(data, ignore_errors=True)
    for load in report["loads"]:
        print(
            f"{load['load']:>6} load: first chart {load['first_chart_s'] * 1000:.0f} ms, "
            f"{load['bytes']:,} bytes in {load['requests']} responses",
            file=sys.stderr,
        )
    for swap in report["swaps"]:
        print(
            f"swap {swap['swap']:>28}: numbers {swap['numbers_ms']} ms, "
            f"all panels {swap['settled_ms']} ms (medians of 3)",
            file=sys.stderr,
        )
    print(json.dumps(report))
    if getattr(args, "output", None):
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
