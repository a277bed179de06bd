"""Every cookie we set, read off the real Set-Cookie headers: HttpOnly, SameSite, Secure
exactly when the browser's leg is https (the connection, a trusted proxy's X-Forwarded-Proto,
or an https GATRIX_PUBLIC_URL), and a path under GATRIX_ROOT_PATH (the Gatrix platform
serves us under /api/v1/analytics: a cookie for "/" would reach every app on that host)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatrix.buffer.keys import SHARE_UNLOCK_TTL_S, WEB_SESSION_TTL_S
from gatrix.meta import accounts
from gatrix.meta.projects import create_project

from ..conftest import LiveServer, make_settings

PASSWORD = "correct horse battery"
SHARE_PASSWORD = "share-pass-123"
PREFIX = "/api/v1/analytics"
HTTPS = {"x-forwarded-proto": "https"}


def start(tmp: pytest.TempPathFactory, data_dir: Path, **settings: Any) -> LiveServer:
    own = Path(tmp.mktemp("cookies"))
    chdb = f"chdb://{data_dir / 'clickhouse'}"
    return LiveServer(make_settings(own, clickhouse_url=chdb, **settings)).start()


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    """Under a path prefix, behind a trusted proxy on this host."""
    live = start(tmp_path_factory, data_dir, root_path=PREFIX, trusted_proxies=["127.0.0.1/32"])
    yield live
    live.stop()


@pytest.fixture(scope="module")
def public_https(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    live = start(tmp_path_factory, data_dir, public_url="https://stats.example.com")
    yield live
    live.stop()


def cookies_of(reply: httpx.Response) -> dict[str, dict[str, Any]]:
    """Set-Cookie headers as {name: {"value": …, attribute (lower-case): value or True}}."""
    out: dict[str, dict[str, Any]] = {}
    for header in reply.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        parsed: dict[str, Any] = {"value": value.strip('"')}
        for attribute in attributes:
            key, sep, val = attribute.partition("=")
            parsed[key.lower()] = val if sep else True
        out[name] = parsed
    return out


def csrf_field(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def seed(server: LiveServer) -> tuple[str, str]:
    """A user and a password-protected share link, straight in the metadata database."""
    engine = server.services.engine
    email = f"cookie-{uuid.uuid4().hex[:6]}@gatrix.test"
    accounts.create_user(engine, email, PASSWORD, True)
    project = create_project(engine, f"Cookies {uuid.uuid4().hex[:6]}", origins=["*"])
    return email, accounts.create_share_link(engine, project.project_id, SHARE_PASSWORD)


def cookie_flow(server: LiveServer, root: str, extra: dict[str, str]) -> dict[str, Any]:
    """Log in, log out and unlock a share link as a browser does, sending `extra` headers
    (X-Forwarded-Proto) with every request. Cookies travel by hand: a cookie jar would
    withhold the Secure ones from this plain-http test server."""
    email, token = seed(server)
    url = server.url + root
    found: dict[str, Any] = {"token": token}

    login = httpx.get(f"{url}/login", headers=extra)
    found["csrf"] = cookies_of(login)["gatrix_csrf"]
    csrf = found["csrf"]["value"]
    logged_in = httpx.post(
        f"{url}/login",
        data={"_csrf": csrf_field(login.text), "email": email, "password": PASSWORD},
        headers={**extra, "cookie": f"gatrix_csrf={csrf}"},
    )
    assert logged_in.status_code == 303 and logged_in.headers["location"] == f"{root}/projects"
    found["session"] = cookies_of(logged_in)["gatrix_session"]
    session = {**extra, "cookie": f"gatrix_session={found['session']['value']}"}
    projects = httpx.get(f"{url}/projects", headers=session)
    assert projects.status_code == 200
    logged_out = httpx.post(
        f"{url}/logout", data={"_csrf": csrf_field(projects.text)}, headers=session
    )
    assert logged_out.status_code == 303 and logged_out.headers["location"] == f"{root}/login"
    found["cleared"] = cookies_of(logged_out)["gatrix_session"]

    locked = httpx.get(f"{url}/share/{token}", headers=extra)
    assert locked.status_code == 401
    visitor_csrf = cookies_of(locked)["gatrix_csrf"]["value"]
    unlocked = httpx.post(
        f"{url}/share/{token}",
        data={"_csrf": csrf_field(locked.text), "password": SHARE_PASSWORD},
        headers={**extra, "cookie": f"gatrix_csrf={visitor_csrf}"},
    )
    assert unlocked.status_code == 303
    assert unlocked.headers["location"] == f"{root}/share/{token}"
    found["share"] = cookies_of(unlocked)["gatrix_share"]
    shown = httpx.get(
        f"{url}/share/{token}",
        headers={**extra, "cookie": f"gatrix_share={found['share']['value']}"},
    )
    assert shown.status_code == 200  # the cookie opens the link it was made for
    return found


def assert_cookies(found: dict[str, Any], root: str, secure: bool) -> None:
    for name in ("csrf", "session", "cleared", "share"):
        cookie = found[name]
        assert cookie.get("httponly") is True, (name, cookie)
        assert cookie.get("secure", False) is secure, (name, cookie)
    assert found["csrf"]["path"] == f"{root}/"
    assert found["csrf"]["samesite"].lower() == "strict"
    assert found["session"]["path"] == f"{root}/"
    assert found["session"]["samesite"].lower() == "lax"
    assert found["session"]["max-age"] == str(WEB_SESSION_TTL_S)
    # logging out overwrites the very cookie login set: same name, same path
    assert found["cleared"]["path"] == f"{root}/" and found["cleared"]["max-age"] == "0"
    assert found["share"]["path"] == f"{root}/share/{found['token']}"
    assert found["share"]["samesite"].lower() == "lax"
    assert found["share"]["max-age"] == str(SHARE_UNLOCK_TTL_S)


def test_cookies_without_a_prefix_over_plain_http(site: LiveServer) -> None:
    assert_cookies(cookie_flow(site, "", {}), "", secure=False)


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(site: LiveServer) -> None:
    # `site` trusts no proxy: anyone can send this header, so it proves nothing
    assert_cookies(cookie_flow(site, "", HTTPS), "", secure=False)


def test_cookies_under_the_root_path_behind_a_trusted_proxy(prefixed: LiveServer) -> None:
    assert_cookies(cookie_flow(prefixed, PREFIX, {}), PREFIX, secure=False)
    assert_cookies(cookie_flow(prefixed, PREFIX, HTTPS), PREFIX, secure=True)
    # a chain of proxies lists one scheme per hop; the browser's leg was https
    chain = {"x-forwarded-proto": "https, http"}
    assert_cookies(cookie_flow(prefixed, PREFIX, chain), PREFIX, secure=True)
    plain = {"x-forwarded-proto": "http"}
    assert_cookies(cookie_flow(prefixed, PREFIX, plain), PREFIX, secure=False)


def test_an_https_public_url_makes_every_cookie_secure(public_https: LiveServer) -> None:
    assert_cookies(cookie_flow(public_https, "", {}), "", secure=True)


def test_a_cookie_for_the_prefix_reaches_the_pages_under_it(prefixed: LiveServer) -> None:
    """What a browser's jar does with the prefixed cookies: it sends them to our pages."""
    email, _ = seed(prefixed)
    with httpx.Client(base_url=prefixed.url + PREFIX, timeout=30) as browser:
        login = browser.get("/login")
        reply = browser.post(
            "/login",
            data={"_csrf": csrf_field(login.text), "email": email, "password": PASSWORD},
        )
        assert reply.status_code == 303
        assert browser.get("/projects").status_code == 200
        # and not to the rest of the host
        assert [c.path for c in browser.cookies.jar if c.name == "gatrix_session"] == [f"{PREFIX}/"]
