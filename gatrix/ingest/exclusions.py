"""Traffic a project does not want counted: sender IPs and CIDR ranges, page hosts, page path
globs. Rules are validated when saved (`parse`), compiled once when the project's client is
loaded into the directory cache (`compile_rules`), and matched on every hit (`Exclusions.reason`),
so the request path does integer comparisons and one regex per kind, never a parse of a rule.

Syntax (one rule per line on the settings page):
- ips: `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32` (an IPv4-mapped IPv6 sender matches
  IPv4 rules)
- hosts: `staging.example.com` (exact) or `*.example.com` (any subdomain, not the domain
  itself); case and a leading `www.` are ignored, as for the page's host
- paths: globs over the page path without its query: `*` is any run of characters, `/` too,
  and `?` one character: `/admin/*`, `*/preview`
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

from gatrix.ingest.enrich.referrer import strip_www

KINDS = ("ips", "hosts", "paths")
MAX_RULES = 100  # per kind
MAX_RULE_LENGTH = 200
_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_-]{1,63})*$")


class InvalidRule(ValueError):
    """A rule that cannot be saved; the message says which and why, for the settings page."""


def _lines(value: str | list[str]) -> list[str]:
    items = value.splitlines() if isinstance(value, str) else value
    return [line.strip() for line in items if line and line.strip()]


def _check_ip(rule: str) -> str:
    try:
        network = ipaddress.ip_network(rule, strict=False)
    except ValueError:
        raise InvalidRule(
            f"IP {rule!r} is neither an address nor a CIDR range "
            "(e.g. 203.0.113.7, 203.0.113.0/24, 2001:db8::/32)"
        ) from None
    # a range is stored as its network (10.1.2.3/8 → 10.0.0.0/8); an address as typed
    return str(network) if "/" in rule else rule


def _check_host(rule: str) -> str:
    host = rule.lower()
    if not _HOST.match(host):
        raise InvalidRule(
            f"host {rule!r} is not a host name (e.g. staging.example.com or *.example.com)"
        )
    return host


def _check_path(rule: str) -> str:
    if not rule.startswith(("/", "*")):
        raise InvalidRule(f"path {rule!r} must start with / or * (e.g. /admin/*, */preview)")
    return rule


_CHECKS = {"ips": _check_ip, "hosts": _check_host, "paths": _check_path}


def parse(texts: dict[str, str | list[str]]) -> dict[str, list[str]]:
    """Rules as typed (one per line, or lists) → the stored form; raises InvalidRule."""
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        rules = _lines(texts.get(kind) or "")
        if len(rules) > MAX_RULES:
            raise InvalidRule(f"at most {MAX_RULES} {kind} rules")
        checked: list[str] = []
        for rule in rules:
            if len(rule) > MAX_RULE_LENGTH:
                raise InvalidRule(f"a rule has at most {MAX_RULE_LENGTH} characters")
            rule = _CHECKS[kind](rule)
            if rule not in checked:
                checked.append(rule)
        out[kind] = checked
    return out


def loads(stored: str | None) -> dict[str, list[str]]:
    """The stored JSON → lists per kind; anything unreadable counts as no rules."""
    try:
        data: Any = json.loads(stored or "{}")
    except ValueError:
        return {kind: [] for kind in KINDS}
    if not isinstance(data, dict):
        data = {}
    return {
        kind: [str(r) for r in data.get(kind) or [] if isinstance(r, str)]
        if isinstance(data.get(kind), list)
        else []
        for kind in KINDS
    }


def _ip_number(ip: str) -> tuple[int, int] | None:
    """(version, integer) of an address; an IPv4-mapped IPv6 address is its IPv4 address.
    inet_pton, not `ipaddress`: measured ~30× faster, and this runs on every hit."""
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except (OSError, ValueError):
        return None
    n = int.from_bytes(packed, "big")
    if len(packed) == 4:
        return 4, n
    return (4, n & 0xFFFFFFFF) if n >> 32 == 0xFFFF else (6, n)


def _glob_regex(globs: list[str]) -> re.Pattern[str] | None:
    # one alternation: a single regex call per hit however many rules there are
    return re.compile("|".join(f"(?:{translate(g)})" for g in globs)) if globs else None


@dataclass(frozen=True, slots=True)
class Exclusions:
    ranges: tuple[tuple[int, int, int], ...]  # (version, first, last) as integers
    hosts: frozenset[str]
    host_suffixes: tuple[str, ...]  # ".example.com" for "*.example.com"
    paths: re.Pattern[str] | None

    def reason(self, ip: str, host: str, path: str) -> str | None:
        """The drop reason for a hit from `ip` on page `host` + `path`, or None to keep it."""
        if self.ranges and ip:
            number = _ip_number(ip)
            if number is not None:
                version, n = number
                for v, first, last in self.ranges:
                    if v == version and first <= n <= last:
                        return "excluded_ip"
        if host and (host in self.hosts or host.endswith(self.host_suffixes)):
            return "excluded_host"
        if self.paths is not None and path and self.paths.fullmatch(path):
            return "excluded_path"
        return None


def compile_rules(rules: dict[str, list[str]]) -> Exclusions | None:
    """Stored rules → a matcher, or None when there are none (the common case costs nothing).
    A rule that no longer parses is skipped: ingestion must not fail on an old bad row."""
    ranges = []
    for rule in rules.get("ips", []):
        try:
            net = ipaddress.ip_network(rule, strict=False)
        except ValueError:
            continue
        ranges.append((net.version, int(net.network_address), int(net.broadcast_address)))
    hosts, suffixes = set(), []
    for rule in rules.get("hosts", []):
        host = rule.lower()
        if host.startswith("*."):
            suffixes.append(host[1:])
        else:
            hosts.add(strip_www(host))
    paths = _glob_regex([p for p in rules.get("paths", []) if p])
    if not ranges and not hosts and not suffixes and paths is None:
        return None
    return Exclusions(tuple(ranges), frozenset(hosts), tuple(suffixes), paths)
