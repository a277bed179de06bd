"""The admin flow in a real headless Chromium: setup → project → snippet → first event →
the install check turns green by itself. Screenshots land in test-artifacts/."""

from __future__ import annotations

from typing import Any

from ..conftest import ARTIFACTS, LiveServer, needs_chromium, send_page_view

pytestmark = needs_chromium


def test_first_run_to_first_event(site: LiveServer, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{site.url}/")
    assert page.url.endswith("/setup")
    page.fill("input[name=email]", "owner@gatrix.test")
    page.fill("input[name=password]", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")
    page.screenshot(path=str(ARTIFACTS / "admin-projects.png"), full_page=True)

    page.fill("input[name=name]", "Browser <b>Shop</b>")
    page.fill("textarea[name=origins]", "shop.example.com")
    page.click("form[action='/projects'] button[type=submit]")
    page.wait_for_selector("#new-client-secret")
    assert page.inner_text("h1") == "Browser <b>Shop</b>"  # shown as text, not markup
    client_id = page.inner_text("#new-client-id").strip()
    snippet = page.inner_text("#snippet-script")
    assert f'data-client-id="{client_id}"' in snippet and f"{site.url}/op1.js" in snippet
    assert "Waiting for the first event" in page.inner_text("#install-check")
    page.screenshot(path=str(ARTIFACTS / "admin-settings-waiting.png"), full_page=True)

    reply = send_page_view(site.url, client_id, "https://shop.example.com/hello")
    assert reply.status_code == 200
    page.wait_for_selector("#install-check.ok", timeout=20_000)
    assert "/hello" in page.inner_text("#install-check")
    page.screenshot(path=str(ARTIFACTS / "admin-settings-green.png"), full_page=True)
    assert errors == []
    page.close()
