"""A crawler in a real Chromium that clicks everything a person can click, so that no click
ends on an error: as the admin, every KPI card, every option of the range and interval
selects, the previous-period toggle, every tab and every row of every panel (each row adds a
filter, which its chip removes again), the event-property links, the browser/OS drill-down,
and every same-origin link of the realtime, settings, projects and users pages; then the
same overview through a share link made with the settings form, open and password-protected.

Every same-origin answer of 400 or more, console error, page error, page without the app's
layout, swap that leaves its target missing or empty, and navigation that ends on an error
page is collected with what was clicked, and the test fails once at the end with the list.
Screenshots, the report, every action in order and the server's warnings and tracebacks go
to test-artifacts/crawl-*.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time
from gatrix.meta.goals import create_goal
from gatrix.meta.segments import create_segment

from ..conftest import ARTIFACTS, LiveServer, needs_chromium
from ..factory import events
from .conftest import new_tab

pytestmark = needs_chromium

HTMX_BUSY = ".htmx-request, .htmx-swapping, .htmx-settling, .panel.loading"
ERROR_TITLE = re.compile(r"^\d{3} · ")
SWAP_TIMEOUT_S = 10.0
MAX_ACTIONS = 800  # a bound on the whole crawl, far above what the seeded data needs
SHARE_PASSWORD = "crawler share pass"
SHARE_ROWS = 1
CRAWL_PERSON = (
    "crawl-person"  # rows clicked per tab through a share link (the admin's crawl clicks all)
)
# what a share page must never show: the way into the admin side, or people (personal data)
ADMIN_MARKS = (
    "a[href*='/projects'], a[href*='/users'], a[href*='/dashboard/'], a[href*='/settings'], "
    "a[href*='/people'], form[action*='/logout'], form[action*='/projects'], header.top nav"
)


# --- the data: every dimension the dashboard shows, over the last 40 days and right now

VISITS: list[dict[str, Any]] = [
    {
        "days": 1,
        "pages": ["/", "/pricing", "/checkout"],
        "referrer": "https://www.google.com/",
        "referrer_name": "Google",
        "referrer_type": "search",
        "country": "DE",
        "region": "Berlin",
        "city": "Berlin",
        "browser": "Chrome",
        "browser_version": "131.0",
        "os": "Windows",
        "os_version": "10",
        "device": "desktop",
        "screen": "1920x1080",
        "language": "de-DE",
        "custom": [("purchase", {"plan": "pro", "coupon": "SPRING"}, 49.0)],
    },
    {
        "days": 3,
        "pages": ["/blog/hello", "/pricing"],
        "referrer": "https://t.co/abc",
        "referrer_name": "X",
        "referrer_type": "social",
        "country": "US",
        "region": "California",
        "city": "San Francisco",
        "browser": "Safari",
        "browser_version": "18.1",
        "os": "iOS",
        "os_version": "18.1",
        "device": "mobile",
        "brand": "Apple",
        "model": "iPhone",
        "screen": "390x844",
        "language": "en-US",
        "custom": [("signup", {"method": "email"}, 0.0)],
    },
    {
        "days": 6,
        "pages": ["/docs", "/docs/install", "/"],
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring",
        "referrer_type": "email",
        "country": "FR",
        "region": "Île-de-France",
        "city": "Paris",
        "browser": "Firefox",
        "browser_version": "133.0",
        "os": "Linux",
        "os_version": "",
        "device": "desktop",
        "screen": "1366x768",
        "language": "fr-FR",
        "custom": [("signup", {"method": "google"}, 0.0)],
    },
    {
        "days": 9,
        "pages": ["/pricing", "/checkout"],
        "referrer": "https://www.google.com/",
        "referrer_name": "Google",
        "referrer_type": "paid",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "brand",
        "click_id_type": "gclid",
        "click_id": "abc123",
        "country": "GB",
        "region": "England",
        "city": "London",
        "browser": "Chrome",
        "browser_version": "130.0",
        "os": "Android",
        "os_version": "14",
        "device": "mobile",
        "brand": "Google",
        "model": "Pixel 8",
        "screen": "412x915",
        "language": "en-GB",
        "custom": [("purchase", {"plan": "team"}, 99.0)],
    },
    {  # direct, from nowhere we know
        "days": 14,
        "pages": ["/"],
        "browser": "Edge",
        "browser_version": "131.0",
        "os": "Windows",
        "os_version": "11",
        "device": "desktop",
    },
    {
        "days": 20,
        "pages": ["/blog/hello", "/docs"],
        "referrer": "https://chatgpt.com/",
        "referrer_name": "ChatGPT",
        "referrer_type": "ai",
        "country": "JP",
        "region": "Tokyo",
        "city": "Tokyo",
        "browser": "Safari",
        "browser_version": "17.6",
        "os": "iPadOS",
        "os_version": "17.6",
        "device": "tablet",
        "brand": "Apple",
        "model": "iPad",
        "screen": "820x1180",
        "language": "ja-JP",
    },
    {
        "days": 27,
        "pages": ["/blog/hello"],
        "referrer": "https://news.ycombinator.com/",
        "referrer_name": "Hacker News",
        "referrer_type": "link",
        "utm_source": "hn",
        "country": "US",
        "region": "New York",
        "city": "New York",
        "browser": "Firefox",
        "browser_version": "132.0",
        "os": "macOS",
        "os_version": "14.6",
        "device": "desktop",
        "screen": "1440x900",
        "language": "en-US",
    },
    {  # before the default 30 days: seen only with longer ranges
        "days": 38,
        "pages": ["/", "/pricing"],
        "referrer": "https://www.youtube.com/",
        "referrer_name": "YouTube",
        "referrer_type": "video",
        "country": "KR",
        "region": "Seoul",
        "city": "Seoul",
        "language": "ko-KR",
        "custom": [("purchase", {"plan": "pro"}, 49.0)],
    },
    {  # a person: logged in after an anonymous page view (the People pages)
        "days": 2,
        "pages": ["/", "/account"],
        "profile_from": 1,
        "country": "DE",
        "city": "Berlin",
    },
    {  # right now: the realtime page and the shortest ranges
        "minutes": 12,
        "pages": ["/", "/live"],
        "country": "US",
        "region": "Texas",
        "city": "Austin",
        "language": "en-US",
    },
    {
        "minutes": 4,
        "pages": ["/pricing"],
        "referrer": "https://www.google.com/",
        "referrer_name": "Google",
        "referrer_type": "search",
        "country": "DE",
        "region": "Bavaria",
        "city": "Munich",
        "custom": [("purchase", {"plan": "pro", "coupon": "SPRING"}, 49.0)],
    },
]


def visit_specs(now: datetime) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for n, visit in enumerate(VISITS):
        ago = timedelta(days=visit.get("days", 0), minutes=visit.get("minutes", 0))
        start = now - ago - (timedelta(hours=1) if "days" in visit else timedelta())
        skip = ("days", "minutes", "pages", "custom", "profile_from")
        attrs = {k: v for k, v in visit.items() if k not in skip}
        session = {"device_id": f"crawl-v{n}", "session_id": f"crawl-s{n}", **attrs}
        for i, path in enumerate(visit["pages"]):
            at = start + timedelta(seconds=40 * i)
            who = {"profile_id": CRAWL_PERSON} if i >= visit.get("profile_from", 99) else {}
            specs.append({"at": at, **session, **who, "path": path, "title": f"Page {path}"})
        for i, (name, props, revenue) in enumerate(visit.get("custom", [])):
            at = start + timedelta(seconds=40 * len(visit["pages"]) - 20 + i)
            path = visit["pages"][-1]
            specs.append(
                {"at": at, **session, "name": name, "path": path, "properties": props}
                | ({"revenue": revenue} if revenue else {})
            )
    return specs


@pytest.fixture(scope="module")
def seeded(owner: dict[str, Any], store: Store, site: LiveServer) -> dict[str, Any]:
    """The module's project ("Dash test crawler", an id of its own in the shared ClickHouse)
    with the week `owner` seeds plus visits that touch every dimension."""
    events(store, owner["project_id"], visit_specs(datetime.now(UTC)))
    identify = {
        "project_id": owner["project_id"],
        "profile_id": CRAWL_PERSON,
        "first_name": "Crawl",
        "email": "crawl@example.com",
        "properties": {"plan": "pro"},
        "updated_at": ch_time(int(datetime.now(UTC).timestamp() * 1000) - 86_400_000),
    }
    store.insert_json_rows("profiles", [json.dumps(identify).encode()], "crawl-identify")
    # a goal of each kind for the Goals panel, and a saved segment for the segment menu
    engine = site.services.engine
    create_goal(engine, owner["project_id"], {"name": "Signed up", "event": "signup"})
    create_goal(engine, owner["project_id"], {"name": "Saw pricing", "page": "/pricing*"})
    create_segment(engine, owner["project_id"], {"name": "Koreans", "filters": ["countries:is:KR"]})
    return owner


# --- the crawler


def same_view(a: str, b: str) -> bool:
    """Two URLs of the same view: same path and the same query pairs, in any order."""
    sa, sb = urlsplit(a), urlsplit(b)
    pairs = (sorted(parse_qsl(s.query, keep_blank_values=True)) for s in (sa, sb))
    return (sa.scheme, sa.netloc, sa.path) == (sb.scheme, sb.netloc, sb.path) and next(
        pairs
    ) == next(pairs)


def changed_view(current: str, href: str, change: dict[str, Any]) -> str:
    """Where an htmx control leads: the current view with the control's one change (its
    `data-view`), on the href's path; the href's own query may predate other changes."""
    pairs = [(k, v) for k, v in parse_qsl(urlsplit(current).query) if k != "flash"]
    if not any(k == "range" for k, _ in pairs):
        pairs.insert(0, ("range", "30d"))  # the default, which the canonical URL spells out
    for key, value in (change.get("set") or {}).items():
        pairs = [(k, v) for k, v in pairs if k != key] + ([(key, value)] if value else [])
    if "filters" in change:  # a saved segment: its filters replace the view's
        pairs = [p for p in pairs if p[0] != "filter"]
        pairs += [("filter", f) for f in change["filters"]]
    if change.get("filter"):
        pairs = [p for p in pairs if p != ("filter", change["filter"])]
        pairs.append(("filter", change["filter"]))
    if change.get("unfilter"):
        pairs = [p for p in pairs if p != ("filter", change["unfilter"])]
    target = urlsplit(href)
    return f"{target.scheme}://{target.netloc}{target.path}?{urlencode(pairs)}"


def query_of(url: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        found.setdefault(key, []).append(value)
    return found


def without_prop(url: str) -> str:
    """The URL without the property tab, which outlives its event filter as the other
    panels' tabs outlive any filter."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "tab_prop"]
    return parts._replace(query=urlencode(kept)).geturl()


def attr_selector(tag: str, name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{tag}[{name}="{escaped}"]'


def short(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def error_detail(body: str) -> str:
    """What an error page or JSON error says, in one line."""
    found = re.search(r"<h1>(\d{3})</h1>\s*<p>(.*?)</p>", body, re.S)
    if found:
        return html.unescape(found.group(2)).strip()
    found = re.search(r'"detail"\s*:\s*"([^"]*)"', body)
    return found.group(1) if found else body[:200].replace("\n", " ")


class LogRecords(logging.Handler):
    """Everything the server logs at WARNING or above while the crawl runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Crawler:
    origin: str
    log: LogRecords
    shared: bool = False  # a share link's pages: no admin links anywhere
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # action, URL, what
    done: set[tuple[str, str]] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)  # seconds per kind of action
    pages: set[str] = field(default_factory=set)
    requests: int = 0
    answers: int = 0
    swaps: int = 0
    action: str = "start"
    trail: list[str] = field(default_factory=list)  # every action, in order
    allowed: set[tuple[str, int]] = field(default_factory=set)
    _bad: list[Any] = field(default_factory=list)
    _broken: list[str] = field(default_factory=list)
    _errors_mark: int = 0
    _log_mark: int = 0
    _action_failures: int = 0
    _kind: str = ""
    _started: float = 0.0

    # -- listening

    def ours(self, url: str) -> bool:
        return url.startswith(self.origin + "/") or url == self.origin

    def watch(self, tab: Any) -> None:
        tab.on("request", self._on_request)
        tab.on("response", self._on_response)
        tab.on("requestfailed", self._on_request_failed)

    def _on_request(self, request: Any) -> None:
        if self.ours(request.url):
            self.requests += 1

    def _on_response(self, response: Any) -> None:
        if not self.ours(response.url):
            return
        kind = response.request.resource_type
        if kind == "document":
            self.pages.add(short(response.url))
        if kind in ("document", "xhr", "fetch"):
            self.answers += 1
            self.swaps += kind != "document"
        if response.status >= 400 and (response.url, response.status) not in self.allowed:
            self._bad.append(response)

    def _on_request_failed(self, request: Any) -> None:
        # a poll cut short by leaving the page is no fault of the server
        if self.ours(request.url) and "ERR_ABORTED" not in (request.failure or ""):
            self._broken.append(f"{request.method} {short(request.url)}: {request.failure}")

    # -- one action: what was clicked, and everything that went wrong while it ran

    def begin(self, tab: Any, kind: str, label: str) -> None:
        if sum(self.kinds.values()) >= MAX_ACTIONS:
            raise RuntimeError(f"crawl exceeded {MAX_ACTIONS} actions")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.action, self._kind, self._started = label, kind, time.monotonic()
        self.trail.append(f"{label}  [from {short(tab.url)}]")
        self._bad, self._broken = [], []
        self._errors_mark = len(tab.errors)
        self._log_mark = len(self.log.records)
        self._action_failures = len(self.failures)

    def fail(self, tab: Any, what: str) -> None:
        self.failures.append((self.action, short(tab.url), what))

    def failed_here(self) -> bool:
        return len(self.failures) > self._action_failures or bool(self._bad)

    def end(self, tab: Any) -> None:
        for response in self._bad:
            try:
                detail = error_detail(response.text())
            except Exception:  # the body is gone once the page has moved on
                detail = ""
            method = response.request.method
            self.fail(tab, f"HTTP {response.status} for {method} {short(response.url)} — {detail}")
        for broken in self._broken:
            self.fail(tab, f"request failed: {broken}")
        refused = {status for _, status in self.allowed}
        for message in tab.errors[self._errors_mark :]:
            # the browser's own line for an answer this action expected (the password form)
            if any(f"status of {status} " in message for status in refused):
                continue
            self.fail(tab, f"console: {message}")
        for record in self.log.records[self._log_mark :]:
            if record.levelno < logging.ERROR:
                continue
            text = f"server log {record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info:
                last = traceback.format_exception(*record.exc_info)[-1].strip()
                text += f" [{last}]"
            self.fail(tab, text)
        self._bad, self._broken = [], []
        self.spent[self._kind] = self.spent.get(self._kind, 0.0) + time.monotonic() - self._started

    def report(self) -> list[str]:
        """The failures grouped by what was clicked and where the tab ended up."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for action, url, what in self.failures:
            grouped.setdefault((action, url), []).append(what)
        lines = []
        for (action, url), whats in grouped.items():
            lines.append(f"- {action}\n    at {url}")
            lines += [f"    {what}" for what in whats]
        return lines

    # -- checks

    def check(self, tab: Any, target: str | None = None, login_ok: bool = False) -> None:
        title = tab.title()
        if ERROR_TITLE.match(title):
            body = tab.locator("main").inner_text() if tab.locator("main").count() else ""
            self.fail(tab, f"error page {title!r}: {' '.join(body.split())[:200]}")
        tops, mains = tab.locator("header.top").count(), tab.locator("main").count()
        if (tops, mains) != (1, 1):
            self.fail(tab, f"app layout broken: {tops} header.top and {mains} main")
        if target is not None:
            found = tab.locator(target)
            if found.count() != 1:
                self.fail(tab, f"swapped element {target} is missing ({found.count()} found)")
            elif not found.inner_text().strip():
                self.fail(tab, f"swapped element {target} is empty")
        path = urlsplit(tab.url).path
        if path.endswith("/login") and not login_ok:
            self.fail(tab, "ended on the login page (the session was lost)")
        if self.shared:
            admin = tab.locator(ADMIN_MARKS)
            if admin.count():
                self.fail(
                    tab,
                    f"share page shows an admin element: {admin.first.evaluate('e => e.outerHTML')[:160]}",
                )

    # -- moves

    def visit(self, tab: Any, label: str, url: str, login_ok: bool = False) -> None:
        """A typed address: reload a state to start from."""
        self.begin(tab, "open", label)
        try:
            tab.goto(url, wait_until="load")
        except Exception as exc:  # a crash of the page is a finding, not the end of the crawl
            self.fail(tab, f"could not open {short(url)}: {exc}")
        self.check(tab, login_ok=login_ok)
        self.end(tab)

    def settle(self, tab: Any, before: int, expect: Callable[[str], bool], wanted: str) -> bool:
        """Wait for the click's answer, the address bar htmx pushes, and the swap's end."""
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while not (self.answers > before and expect(tab.url)):
            if self._bad and self.answers > before:
                break  # refused: htmx will not swap, there is nothing more to wait for
            if time.monotonic() > deadline:
                self.fail(tab, f"the view did not change to {wanted} within {SWAP_TIMEOUT_S} s")
                return False
            tab.wait_for_timeout(25)
        try:
            tab.wait_for_selector(HTMX_BUSY, state="detached", timeout=10_000)
        except PlaywrightTimeout:
            self.fail(tab, "htmx still busy 10 s after the answer")
        return not self._bad

    def swap(self, tab: Any, kind: str, selector: str, target: str, label: str) -> bool | None:
        """Click an htmx link whose href is the view it leads to; None when already done."""
        link = tab.locator(selector).first
        href = link.get_attribute("href") or ""
        url = urljoin(tab.url, href)
        change = link.get_attribute("data-view")
        if change:
            url = changed_view(tab.url, url, json.loads(change))
        if (kind, url) in self.done:
            return None
        self.done.add((kind, url))
        self.begin(tab, kind, f"{label} ({kind})")
        before = self.answers
        link.click()
        ok = self.settle(tab, before, lambda now: same_view(now, url), short(url))
        self.check(tab, target)
        self.end(tab)
        return ok and not self.failed_here()

    def change(
        self, tab: Any, kind: str, label: str, do: Callable[[], Any], expect: Callable[[str], bool]
    ) -> bool:
        """A control of the range form (select, checkbox, button): the whole view swaps."""
        self.begin(tab, kind, label)
        before = self.answers
        do()
        ok = self.settle(tab, before, expect, label)
        self.check(tab, "#dash")
        self.end(tab)
        return ok and not self.failed_here()

    def follow(self, tab: Any, selector: str, label: str, login_ok: bool = False) -> str | None:
        """Click a plain link (a page load); the URL it ended on, None when already done."""
        link = tab.locator(selector).first
        url = urljoin(tab.url, link.get_attribute("href") or "")
        if ("link", url) in self.done:
            return None
        self.done.add(("link", url))
        self.begin(tab, "link", f"{label} (link)")
        try:
            with tab.expect_navigation(wait_until="load", timeout=15_000):
                link.click()
        except PlaywrightTimeout:
            self.fail(tab, f"clicking the link to {short(url)} did not load a page")
        self.check(tab, login_ok=login_ok)
        self.end(tab)
        return tab.url

    def submit(self, tab: Any, form: str, label: str, **fields: str) -> None:
        """Fill and send a form as a person would (Post/Redirect/Get: a page load)."""
        self.begin(tab, "form", f"{label} (form)")
        for name, value in fields.items():
            tab.fill(f"{form} [name={name}]", value)
        try:
            with tab.expect_navigation(wait_until="load", timeout=15_000):
                tab.click(f"{form} button[type=submit]")
        except PlaywrightTimeout:
            self.fail(tab, "the form did not load a page")
        self.check(tab)
        self.end(tab)

    def hrefs(self, tab: Any, selector: str) -> list[str]:
        links = tab.locator(selector)
        return [links.nth(i).get_attribute("href") or "" for i in range(links.count())]

    def summary(self) -> str:
        kinds = ", ".join(
            f"{n} {kind} {self.spent.get(kind, 0):.0f}s" for kind, n in sorted(self.kinds.items())
        )
        return (
            f"{sum(self.kinds.values())} actions ({kinds}); {len(self.pages)} distinct pages "
            f"loaded; {self.requests} same-origin requests ({self.swaps} htmx)"
        )


def shot(tab: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"crawl-{name}.png"), full_page=True)


def panel_names(tab: Any) -> list[str]:
    panels = tab.locator("#dash section.panel")
    ids = [panels.nth(i).get_attribute("id") or "" for i in range(panels.count())]
    return [i.removeprefix("panel-") for i in ids if i]


def drop_chips(c: Crawler, tab: Any, label: str, keep: int = 0) -> None:
    """Remove filters with their chips, newest first, until `keep` are left."""
    for _ in range(10):
        chips = tab.locator("ul.chips a.chip")
        if chips.count() <= keep:
            return
        chip = chips.nth(chips.count() - 1)
        href = chip.get_attribute("href") or ""
        name = " ".join(chip.inner_text().split())
        c.done.discard(("chip", urljoin(tab.url, href)))  # the same chip in another state
        if not c.swap(
            tab,
            "chip",
            attr_selector("ul.chips a.chip", "href", href),
            "#dash",
            f"{label} / remove chip {name!r}",
        ):
            return


def filtered_view(c: Crawler, tab: Any, label: str, rows_per_tab: int | None) -> None:
    """What a filter brings: an event's property links (and their rows), a browser's or an
    OS's versions. Each second filter is removed again by its chip."""
    for href in c.hrefs(tab, "#panel-events p.hint a"):
        key = href.rsplit("tab_prop=", 1)[-1]
        if not c.swap(
            tab,
            "property",
            attr_selector("#panel-events p.hint a", "href", href),
            "#panel-events",
            f"{label} / property {key}",
        ):
            continue
        for row in c.hrefs(tab, "#panel-events a.row-filter")[:rows_per_tab]:
            sel = attr_selector("#panel-events a.row-filter", "href", row)
            name = tab.locator(sel).first.inner_text()
            if c.swap(tab, "property-row", sel, "#dash", f"{label} / property {key} = {name!r}"):
                drop_chips(c, tab, label, keep=1)
    heading = tab.locator("#panel-devices thead th").first.inner_text()
    if heading in ("Browser version", "OS version"):
        for row in c.hrefs(tab, "#panel-devices a.row-filter")[:rows_per_tab]:
            sel = attr_selector("#panel-devices a.row-filter", "href", row)
            name = tab.locator(sel).first.inner_text()
            if c.swap(tab, "drill-down", sel, "#dash", f"{label} / {heading} {name!r}"):
                drop_chips(c, tab, label, keep=1)


def goals_and_segments(c: Crawler, tab: Any, base: str, segments: bool) -> None:
    """Each goal of the Goals panel (chosen, then chosen again to clear it) and each saved
    segment of the menu."""
    c.visit(tab, "back to the overview", base)
    tab.wait_for_selector("#panel-goals:not(.loading)")
    goals = tab.locator("#panel-goals a.goal-link")
    names = [goals.nth(i).inner_text() for i in range(goals.count())]
    if not names:
        c.fail(tab, "the Goals panel lists none of the project's goals")
    for name in names:
        sel = f"#panel-goals a.goal-link:text-is({json.dumps(name)})"
        if c.swap(tab, "goal", sel, "#dash", f"goal {name!r}"):
            if "goal" not in query_of(tab.url):
                c.fail(tab, f"choosing goal {name!r} left it out of the URL")
            tab.wait_for_selector("#panel-goals:not(.loading)")
            c.swap(tab, "goal", sel, "#dash", f"goal {name!r} again (clears it)")
    if not segments:
        return
    c.visit(tab, "back to the overview", base)
    names = []
    if tab.locator("details#segments").count():
        tab.click("details#segments > summary")
        menu = tab.locator("details#segments a.segment")
        names = [menu.nth(i).inner_text() for i in range(menu.count())]
    if not names:
        c.fail(tab, "the segment menu lists none of the project's segments")
    for name in names:
        if not tab.locator("details#segments[open]").count():
            tab.click("details#segments > summary")
        sel = f"details#segments a.segment:text-is({json.dumps(name)})"
        if c.swap(tab, "segment", sel, "#dash", f"segment {name!r}") and not query_of(tab.url).get(
            "filter"
        ):
            c.fail(tab, f"segment {name!r} applied no filter")


def crawl_overview(
    c: Crawler,
    tab: Any,
    base: str,
    name: str,
    rows_per_tab: int | None = None,
    controls: bool = True,
) -> None:
    """Every control of the overview at `base`; `rows_per_tab` bounds the rows clicked."""
    c.visit(tab, f"open the overview {short(base)}", base)
    shot(tab, name)
    if controls:
        for key in [
            tab.locator("a[data-kpi]").nth(i).get_attribute("data-kpi") or ""
            for i in range(tab.locator("a[data-kpi]").count())
        ]:
            c.swap(tab, "kpi", f"[data-kpi='{key}']", "#dash", f"KPI card {key}")
        c.visit(tab, "back to the overview", base)
        options = tab.locator("#range option")
        for value in [options.nth(i).get_attribute("value") or "" for i in range(options.count())]:
            c.change(
                tab,
                "range",
                f"range select → {value}",
                lambda v=value: tab.select_option("#range", v),
                lambda now, v=value: query_of(now).get("range") == [v],
            )
        shot(tab, f"{name}-range-custom")
        c.visit(tab, "back to the overview", base)
        # every interval the select offers (those that would make too many points for the
        # range are disabled, and must stay so)
        enabled = tab.locator("select[name=interval] option:not([disabled])")
        offered = [enabled.nth(i).get_attribute("value") for i in range(enabled.count())]
        usable = [
            (o or "") if o is not None else enabled.nth(i).inner_text()
            for i, o in enumerate(offered)
        ]
        assert "minute" not in usable and "day" in usable  # 30 days in minutes: too many
        for value in [v for v in usable if v] + [""]:
            c.change(
                tab,
                "interval",
                f"interval select → {value or 'auto'}",
                lambda v=value: tab.select_option("select[name=interval]", v),
                lambda now, v=value: query_of(now).get("interval", [""]) == [v],
            )
        c.visit(tab, "back to the overview", base)
        c.change(
            tab,
            "compare",
            "tick Hide previous period",
            lambda: tab.check("input[name=compare]"),
            lambda now: query_of(now).get("compare") == ["off"],
        )
        if tab.locator("#kpis .change").count():
            c.fail(tab, "previous period still shown after hiding it")
        c.change(
            tab,
            "compare",
            "untick Hide previous period",
            lambda: tab.uncheck("input[name=compare]"),
            lambda now: "compare" not in query_of(now),
        )
        c.change(
            tab,
            "apply",
            "Apply button",
            lambda: tab.click("form.controls button[type=submit]"),
            lambda now: "range" in query_of(now),
        )
        goals_and_segments(c, tab, base, segments=not c.shared)
        c.visit(tab, "back to the overview", base)
    for panel in panel_names(tab):
        tabs = tab.locator(f"#panel-{panel} a[role=tab]")
        # by name: a tab's href carries the view as it was when its panel was drawn
        for name in [tabs.nth(i).inner_text() for i in range(tabs.count())]:
            sel = f"#panel-{panel} a[role=tab]:text-is({json.dumps(name)})"
            tab_href = tab.locator(sel).first.get_attribute("href") or base
            where = f"{panel} panel, tab {name!r}"
            if c.swap(tab, "tab", sel, f"#panel-{panel}", where) is False:
                c.visit(tab, "recover", urljoin(base, tab_href))
            state = tab.url
            for row in c.hrefs(tab, f"#panel-{panel} a.row-filter")[:rows_per_tab]:
                if not same_view(tab.url, state):
                    c.visit(tab, "recover", state)
                row_sel = attr_selector(f"#panel-{panel} a.row-filter", "href", row)
                if not tab.locator(row_sel).count():
                    c.action = f"{where}, back from a row"
                    c.fail(tab, f"row link {row} is gone after returning to {short(state)}")
                    continue
                value = tab.locator(row_sel).first.inner_text()
                label = f"{where}, row {value!r}"
                if c.swap(tab, "row", row_sel, "#dash", label):
                    filtered_view(c, tab, label, rows_per_tab)
                    drop_chips(c, tab, label)
                    if not same_view(without_prop(tab.url), without_prop(state)):
                        c.action = f"{label} / all chips removed"
                        c.fail(tab, f"expected the unfiltered view {short(state)} back")


def follow_links(
    c: Crawler, tab: Any, start: str, login_ok: bool = False, limit: int = 20
) -> set[str]:
    """Every same-origin link outside the overview's own controls, page by page from
    `start`; the pages reached (paths)."""
    queue, seen = [start], set()
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if short(url) in seen:
            continue
        seen.add(short(url))
        c.visit(tab, f"open {short(url)}", url, login_ok=login_ok)
        links = tab.locator("a[href]")
        hrefs = [
            href
            for i in range(links.count())
            if (href := links.nth(i).get_attribute("href") or "")
            # the overview's own controls are crawled apart; a download is not a page
            and not links.nth(i).evaluate("e => !!e.closest('#dash') || e.hasAttribute('download')")
            and c.ours(urljoin(url, href))
        ]
        for href in hrefs:
            if not same_view(tab.url, url):
                c.visit(tab, "recover", url, login_ok=login_ok)
            sel = attr_selector("a", "href", href)
            text = " ".join(tab.locator(sel).first.inner_text().split()) or href
            target = tab.locator(sel).first.get_attribute("hx-target")
            if target:  # an htmx link (People pages): it swaps its target and pushes its URL
                label = f"{short(url)}: htmx link {text!r}"
                if c.swap(tab, "htmx", sel, target, label):
                    queue.append(tab.url)
                continue
            landed = c.follow(tab, sel, f"{short(url)}: link {text!r}", login_ok=login_ok)
            if landed is None or not c.ours(landed):
                continue
            path = urlsplit(landed).path
            if re.fullmatch(r"/(dashboard|share)/[^/]+", path):
                continue  # the overview has a crawl of its own
            queue.append(landed.split("?flash=")[0])
    return {urlsplit(u).path for u in seen}


def share_link(c: Crawler, tab: Any, settings: str, password: str) -> str:
    c.visit(tab, "open the project settings", settings)
    c.submit(
        tab,
        "form[action$='/share-links']",
        f"create a share link{' with a password' if password else ''}",
        password=password,
    )
    return tab.inner_text("#new-share").strip()


# every page and tab of the product, clicked: ~150 s on a quiet machine, far more when the
# cores are shared with other work
@pytest.mark.timeout(900)
def test_every_click_lands_on_a_page_without_errors(
    page: Any, browser: Any, site: LiveServer, seeded: dict[str, Any]
) -> None:
    started = time.monotonic()
    log = LogRecords()
    logging.getLogger().addHandler(log)
    c = Crawler(site.url, log)
    c.watch(page)
    page.set_default_timeout(10_000)
    project = seeded["project_id"]
    base = f"{site.url}/dashboard/{project}"
    try:
        crawl_overview(c, page, base, "overview")
        reached = follow_links(c, page, base)
        for must in (
            f"/dashboard/{project}/realtime",
            f"/dashboard/{project}/people",
            f"/dashboard/{project}/people/{CRAWL_PERSON}",
            f"/dashboard/{project}/funnels",
            f"/dashboard/{project}/retention",
            f"/dashboard/{project}/paths",
            "/projects",
            f"/projects/{project}/settings",
            "/users",
        ):
            if must not in reached:
                c.failures.append(("rule 10", must, "not reached by clicking from the overview"))
        c.visit(page, "open realtime", f"{base}/realtime")
        shot(page, "realtime")

        settings = f"{site.url}/projects/{project}/settings"
        open_url = share_link(c, page, settings, "")
        locked_url = share_link(c, page, settings, SHARE_PASSWORD)

        # a visitor of a share link is another session: links already clicked as the admin
        # may lead elsewhere for them, so each session's clicks are its own
        c.shared = True
        with new_tab(browser) as tab:
            tab.set_default_timeout(10_000)
            c.watch(tab)
            c.done.clear()
            # the same templates as the admin's overview behind another address: every
            # control and tab, and the first row of each tab (with its property links and
            # versions), which keeps the crawl within its time
            crawl_overview(c, tab, open_url, "share-overview", rows_per_tab=SHARE_ROWS)
            follow_links(c, tab, open_url, login_ok=True)
        with new_tab(browser) as tab:
            tab.set_default_timeout(10_000)
            c.watch(tab)
            c.done.clear()
            c.allowed.add((locked_url, 401))  # the password form answers 401 until unlocked
            c.visit(tab, "open the password-protected share link", locked_url)
            c.allowed.clear()
            if tab.locator("#dash").count() or not tab.locator("input[name=password]").count():
                c.fail(tab, "a protected share link shows data or no password form")
            shot(tab, "share-password")
            c.submit(
                tab,
                f"form[action$='{urlsplit(locked_url).path}']",
                "unlock the share link",
                password=SHARE_PASSWORD,
            )
            if not tab.locator("#dash").count():
                c.fail(tab, "the right password did not show the dashboard")
            crawl_overview(c, tab, locked_url, "share-unlocked", rows_per_tab=1, controls=False)
            follow_links(c, tab, locked_url, login_ok=True)
    finally:
        logging.getLogger().removeHandler(log)
        # written even when the crawl itself broke off, with what it had found until then
        report = [f"crawl took {time.monotonic() - started:.1f} s: {c.summary()}", *c.report()]
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "crawl-report.txt").write_text("\n".join(report) + "\n")
        (ARTIFACTS / "crawl-actions.txt").write_text("\n".join(c.trail) + "\n")
        (ARTIFACTS / "crawl-server-log.txt").write_text(
            "".join(
                f"{r.levelname} {r.name}: {r.getMessage()}\n"
                + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
                for r in log.records
            )
        )
    print(report[0])
    assert not c.failures, f"{len(c.failures)} failures in the crawl:\n" + "\n".join(report)
