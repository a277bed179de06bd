"""The time zone names a project may use: IANA names that Python and ClickHouse read alike.

`zoneinfo` also opens files that are not zones of the tz database proper (`posixrules`,
`right/*` leap-second variants, `posix/*` duplicates, the host's `localtime`, the `Factory`
placeholder); ClickHouse rejects some of them and others depend on the host, so they are
refused when a project is saved and read as UTC if an older row still holds one.
"""

from __future__ import annotations

from zoneinfo import available_timezones

_NOT_ZONES = frozenset({"posixrules", "localtime", "Factory"})
_NOT_ZONE_PREFIXES = ("posix/", "right/")

ZONES: frozenset[str] = frozenset(
    name
    for name in available_timezones()
    if name not in _NOT_ZONES and not name.startswith(_NOT_ZONE_PREFIXES)
)
FALLBACK = "UTC"


def validate(name: str) -> str:
    if name not in ZONES:
        raise ValueError(
            f"unknown time zone {name[:80]!r}; use a tz database name such as Europe/Berlin or UTC"
        )
    return name


def usable(name: str) -> str:
    """The stored zone when it is valid; UTC for a row saved before zones were checked, so a
    bad row degrades the time axis instead of breaking every report."""
    return name if name in ZONES else FALLBACK
