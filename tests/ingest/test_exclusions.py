"""Traffic exclusions: rules as typed → validated and stored; compiled rules → the named drop
reason; and over real HTTP, a project's rules drop and count its hits while another project
receiving the same hits keeps them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store
from gatrix.ingest.exclusions import (
    MAX_RULES,
    InvalidRule,
    compile_rules,
    loads,
    parse,
)
from gatrix.meta import keeping
from gatrix.meta.accounts import AccountError
from gatrix.meta.projects import NewClient, create_project, load_client

from ..conftest import CHROME_UA, wait_events

RULES = {
    "ips": "203.0.113.0/24\n198.51.100.7\n2001:db8::/32\n",
    "hosts": "staging.example.com\n*.preview.example.com\n",
    "paths": "/admin/*\n*/preview\n",
}


@pytest.mark.parametrize(
    ("ip", "host", "path", "reason"),
    [
        ("203.0.113.99", "shop.example.com", "/", "excluded_ip"),  # v4 CIDR
        ("198.51.100.7", "shop.example.com", "/", "excluded_ip"),  # one address
        ("::ffff:203.0.113.5", "shop.example.com", "/", "excluded_ip"),  # v4-mapped v6
        ("2001:db8:5::1", "shop.example.com", "/", "excluded_ip"),  # v6 CIDR
        ("2001:db9::1", "shop.example.com", "/", None),
        ("203.0.114.1", "shop.example.com", "/", None),
        ("198.51.100.8", "shop.example.com", "/", None),
        ("not an ip", "shop.example.com", "/", None),
        ("8.8.8.8", "staging.example.com", "/", "excluded_host"),  # exact
        ("8.8.8.8", "a.preview.example.com", "/", "excluded_host"),  # wildcard
        ("8.8.8.8", "b.a.preview.example.com", "/", "excluded_host"),
        ("8.8.8.8", "preview.example.com", "/", None),  # the domain itself is not a subdomain
        ("8.8.8.8", "mystaging.example.com", "/", None),
        ("8.8.8.8", "shop.example.com", "/admin/users", "excluded_path"),
        ("8.8.8.8", "shop.example.com", "/admin/", "excluded_path"),
        ("8.8.8.8", "shop.example.com", "/admin", None),
        ("8.8.8.8", "shop.example.com", "/blog/post-1/preview", "excluded_path"),
        ("8.8.8.8", "shop.example.com", "/preview/post-1", None),
        ("8.8.8.8", "", "", None),
    ],
)
def test_rules_give_the_named_reason(ip: str, host: str, path: str, reason: str | None) -> None:
    rules = compile_rules(parse(RULES))
    assert rules is not None
    assert rules.reason(ip, host, path) == reason


def test_rules_are_stored_tidy_and_no_rules_compile_to_nothing() -> None:
    stored = parse({"ips": " 10.1.2.3/8 \n\n10.0.0.0/8", "hosts": "Staging.Example.com"})
    assert stored == {"ips": ["10.0.0.0/8"], "hosts": ["staging.example.com"], "paths": []}
    assert compile_rules(parse({})) is None
    assert compile_rules(loads("not json")) is None
    assert compile_rules(loads('{"ips": "1.2.3.4", "hosts": [5]}')) is None


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"ips": "10.0.0.0/33"}, "'10.0.0.0/33' is neither an address nor a CIDR range"),
        ({"ips": "300.1.1.1"}, "'300.1.1.1' is neither"),
        ({"ips": "2001:db8::/129"}, "'2001:db8::/129' is neither"),
        ({"hosts": "https://a.example.com/"}, "is not a host name"),
        ({"hosts": "a.*.example.com"}, "is not a host name"),
        ({"paths": "admin/*"}, "must start with / or *"),
        ({"paths": "/" + "a" * 300}, "at most 200 characters"),
        ({"hosts": "\n".join(f"h{i}.example.com" for i in range(MAX_RULES + 1))}, "at most 100"),
    ],
)
def test_bad_rules_are_refused_with_a_message(texts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        parse(texts)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_saved_rules_reach_the_cached_client(sql_engine: Any) -> None:
    created = create_project(sql_engine, "exclusions meta")
    assert load_client(sql_engine, created.client_id).exclusions is None  # type: ignore[union-attr]
    keeping.set_exclusions(sql_engine, created.project_id, {"paths": "/admin/*"})
    info = load_client(sql_engine, created.client_id)
    assert info is not None and info.exclusions is not None
    assert info.exclusions.reason("1.1.1.1", "a.io", "/admin/x") == "excluded_path"
    with pytest.raises(AccountError, match="neither an address"):
        keeping.set_exclusions(sql_engine, created.project_id, {"ips": "10.0.0.0/40"})
    assert keeping.keeping(sql_engine, created.project_id)["exclusions"]["paths"] == "/admin/*"


def _backend_hit(client: NewClient, page: str, ip: str) -> dict[str, Any]:
    return {
        "headers": {
            "openpanel-client-id": client.client_id,
            "openpanel-client-secret": client.client_secret,
            "user-agent": CHROME_UA,
        },
        "json": {
            "type": "track",
            "payload": {"name": "screen_view", "properties": {"__path": page, "__ip": ip}},
        },
    }


def test_excluded_hits_are_dropped_and_counted_for_that_project_only(
    http: httpx.Client, server: Any, server_engine: Any, store: Store
) -> None:
    strict = create_project(server_engine, "exclusions strict")
    other = create_project(server_engine, "exclusions other")
    keeping.set_exclusions(server_engine, strict.project_id, RULES)
    server.services.directory.forget()
    hits = [
        ("https://shop.example.com/", "203.0.113.9", "excluded_ip"),
        ("https://shop.example.com/", "2001:db8::42", "excluded_ip"),
        ("https://x.preview.example.com/", "8.8.8.8", "excluded_host"),
        ("https://staging.example.com/", "8.8.8.8", "excluded_host"),
        ("https://shop.example.com/admin/users", "8.8.8.8", "excluded_path"),
        ("https://shop.example.com/post/preview", "8.8.8.8", "excluded_path"),
        ("https://shop.example.com/kept", "8.8.8.8", None),
    ]
    for page, ip, reason in hits:
        reply = http.post("/track", **_backend_hit(strict, page, ip))
        if reason:
            assert (reply.status_code, reply.json()) == (202, {"dropped": reason}), page
        else:
            assert reply.status_code == 200
        assert http.post("/track", **_backend_hit(other, page, ip)).status_code == 200
    totals = server.services.counters.totals
    assert totals[(strict.project_id, "excluded_ip")] == 2
    assert totals[(strict.project_id, "excluded_host")] == 2
    assert totals[(strict.project_id, "excluded_path")] == 2
    assert [r["path"] for r in wait_events(store, strict.project_id, 1)] == ["/kept"]
    assert len(wait_events(store, other.project_id, len(hits))) == len(hits)
    assert not any(p == other.project_id and o.startswith("excluded") for p, o in totals)
