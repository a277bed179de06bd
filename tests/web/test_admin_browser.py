"""The admin pages in a real Chromium: at phone width (390×844) no page is wider than the
screen and no table header breaks inside a word, with long client ids, secrets and share
links on the page; in dark and light mode every button, input and select is readable (WCAG
contrast ≥ 4.5); a new project's page leads to its dashboard by a click.
Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

from gatrix.meta import accounts
from gatrix.meta.projects import create_project

from ..conftest import ARTIFACTS, LiveServer, needs_chromium, send_page_view, wait_for

pytestmark = needs_chromium

PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
LONG_NAME = "Kundenzufriedenheitsbefragungsauswertung"  # one long word, as German allows
SITE = "https://a-rather-long-subdomain.of-a-long-domain.example"
LONG_EMAIL = "firstname.lastname.with.a.long.department@subsidiary.example-company.com"

# every word of every table header must sit on one line: a Range over the word has one box
BROKEN_HEADERS = """() => {
  const broken = [];
  for (const th of document.querySelectorAll('th')) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""

# text and background of each visible control; a transparent background shows its parent's
CONTROLS = """() => {
  const rgba = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const behind = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const selector = 'button, a.button, select, textarea, ' +
    'input:not([type=hidden]):not([type=checkbox]):not([type=radio])';
  return [...document.querySelectorAll(selector)]
    .filter(el => el.getClientRects().length > 0)
    .map(el => ({
      what: el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' ' +
            (el.textContent || el.name || '').trim().slice(0, 30),
      fg: rgba(getComputedStyle(el).color).slice(0, 3),
      bg: behind(el),
    }));
}"""


def luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: list[float], bg: list[float]) -> float:
    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def fits(tab: Any, name: str) -> None:
    tab.wait_for_load_state("load")
    tab.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
    wide, screen = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide <= screen, f"{name}: the page is {wide} px wide on a {screen} px screen"
    assert tab.evaluate(BROKEN_HEADERS) == [], f"{name}: a header breaks inside a word"


def readable(tab: Any, name: str) -> int:
    controls = tab.evaluate(CONTROLS)
    low = [
        (c["what"], round(contrast(c["fg"], c["bg"]), 2))
        for c in controls
        if contrast(c["fg"], c["bg"]) < 4.5
    ]
    assert low == [], f"{name}: unreadable controls {low}"
    return len(controls)


def test_admin_pages_fit_a_phone_and_lead_to_the_dashboard(site: LiveServer, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=PHONE)
    tab = context.new_page()
    tab.goto(f"{site.url}/")
    assert tab.url.endswith("/setup")
    fits(tab, "setup")
    tab.fill("input[name=email]", LONG_EMAIL)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/projects")
    fits(tab, "projects-empty")

    tab.fill("input[name=name]", LONG_NAME)
    tab.fill("textarea[name=origins]", SITE)
    tab.fill("input[name=timezone]", "America/Argentina/ComodRivadavia")
    tab.click("form[action='/projects'] button[type=submit]")
    tab.wait_for_selector("#new-client-secret")
    project_id = re.search(r"/projects/([^/]+)/settings", tab.url).group(1)
    fits(tab, "settings-new-project")
    for n in range(2):
        tab.fill("form[action$='/clients'] input[name=name]", f"{LONG_NAME}-client-{n}")
        tab.select_option("form[action$='/clients'] select[name=type]", "read")
        tab.click("form[action$='/clients'] button[type=submit]")
        tab.wait_for_selector("#new-client-secret")
    fits(tab, "settings-new-client")
    tab.fill("form[action$='/share-links'] input[name=password]", "share-pass-1")
    tab.click("form[action$='/share-links'] button[type=submit]")
    tab.wait_for_selector("#new-share")
    tab.click("form[action$='/share-links'] button[type=submit]")
    tab.wait_for_selector("#new-share")
    fits(tab, "settings-share-links")
    clients = tab.locator("section:has(> h2:text-is('Clients')) table.list tbody tr")
    assert clients.count() == 3  # the default client and two more
    assert tab.locator("ul.links li code").count() == 2

    # events make the install check and the health list long too
    client_id = tab.inner_text("table.list tbody tr:first-child code").strip()
    assert send_page_view(site.url, client_id, f"{SITE}/{LONG_NAME}").is_success

    def stored() -> bool:
        tab.reload()
        return tab.locator("#install-check[data-state=stored]").count() == 1

    assert wait_for(stored, timeout=20, interval=0.5)
    fits(tab, "settings-with-events")

    tab.click("#open-dashboard")
    tab.wait_for_url(f"**/dashboard/{project_id}")
    assert LONG_NAME in tab.inner_text("body")

    tab.goto(f"{site.url}/users")
    tab.fill("form[action='/users'] input[name=email]", f"second.{LONG_EMAIL}")
    tab.fill("form[action='/users'] input[name=password]", PASSWORD)
    tab.click("form[action='/users'] button[type=submit]")
    tab.wait_for_selector(".notice")
    fits(tab, "users")
    tab.goto(f"{site.url}/projects")
    fits(tab, "projects")
    tab.click(f"text={LONG_NAME}")  # the name leads to the dashboard as well
    tab.wait_for_url(f"**/dashboard/{project_id}")
    tab.goto(f"{site.url}/projects/no-such-project/settings")
    fits(tab, "error-404")
    tab.goto(f"{site.url}/projects")
    tab.click("text=Log out")
    tab.wait_for_url("**/login")
    fits(tab, "login")
    tab.fill("input[name=email]", LONG_EMAIL)
    tab.fill("input[name=password]", "wrong password")
    tab.click("button[type=submit]")
    tab.wait_for_selector(".error")
    fits(tab, "login-error")
    context.close()


def test_controls_are_readable_in_dark_and_light_mode(site: LiveServer, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    engine = site.services.engine
    if not accounts.has_users(engine):  # run on its own, without the test above
        accounts.create_user(engine, LONG_EMAIL, PASSWORD, True)
        create_project(engine, LONG_NAME, origins=["*"])
    for scheme in ("dark", "light"):
        context = browser.new_context(viewport={"width": 1200, "height": 900}, color_scheme=scheme)
        tab = context.new_page()
        tab.goto(f"{site.url}/login")
        assert tab.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (
            scheme == "dark"
        )
        assert readable(tab, f"{scheme} login") >= 3
        tab.fill("input[name=email]", LONG_EMAIL)
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url("**/projects")
        assert readable(tab, f"{scheme} projects") >= 4
        settings = tab.locator("a", has_text="Settings").first.get_attribute("href")
        tab.goto(f"{site.url}{settings}")
        assert readable(tab, f"{scheme} settings") >= 10
        tab.screenshot(path=str(ARTIFACTS / f"{scheme}-settings.png"), full_page=True)
        tab.goto(f"{site.url}/users")
        assert readable(tab, f"{scheme} users") >= 4
        tab.goto(f"{site.url}{settings}")
        tab.click("#open-dashboard")
        tab.wait_for_url("**/dashboard/**")
        # the dashboard's controls (its Apply button among them) share the admin style
        assert readable(tab, f"{scheme} dashboard") >= 1
        tab.screenshot(path=str(ARTIFACTS / f"{scheme}-dashboard.png"), full_page=True)
        context.close()
