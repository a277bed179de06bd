"""An imported record → an event's enriched columns, through the live pipeline's own parsers.

Formats describe what they know as an `Imported`: a full page URL, a referrer URL, and the
visitor's user agent and IP when the source kept them. The live pipeline's parsers then fill
the same columns as for a live hit (user agent → browser/OS/device, URL → path and UTMs,
referrer → channel, IP → geo), with the pipeline's rules for a backend that forwards a
visitor's user agent and IP: the user agent is judged for bots and parsed, the IP believed.
What a source knows only as results (Umami keeps browser names and countries, not user
agents or IPs) is taken as given where the parser had nothing to read. Identity is not a
step here: imports name their visitor ids themselves.

A record's columns come back as one tuple in `ENRICHED` order: an import enriches millions
of records, and building the live path's request objects and row dict for each cost about
twice the parsing itself (whose results are cached by input, as live).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatrix.ingest.enrich.geo import EMPTY as NO_GEO
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.enrich.referrer import channel, parse_page, parse_referrer
from gatrix.ingest.enrich.useragent import UserAgentInfo, is_bot, parse_user_agent
from gatrix.ingest.pipeline import finite_number

_PAGE = ("origin", "path", "query")  # PageInfo's first three; its `host` is no column
_PAGE_TAGS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "click_id_type",
    "click_id",
)
_USER_AGENT = UserAgentInfo._fields  # browser … model
# every column `Enricher.values` fills, in the order of its tuple
ENRICHED = (
    "name",
    "device_id",
    "profile_id",
    *_PAGE,
    *_PAGE_TAGS,
    "title",
    "referrer",
    "referrer_name",
    "referrer_type",
    "country",
    "region",
    "city",
    *_USER_AGENT,
    "screen",
    "language",
    "duration",
    "revenue",
    "properties",
)
_POSITION = {name: i for i, name in enumerate(ENRICHED)}
# columns a format may give as results, used when the matching parser had no input
GIVEN = ("browser", "browser_version", "os", "os_version", "device", "country", "region", "city")
_UTMS = _PAGE_TAGS[:5]
GIVABLE = frozenset((*GIVEN, *_UTMS))
_NO_USER_AGENT = UserAgentInfo("", "", "", "", "", "", "")
_MAX_DURATION = 2**32 - 1


@dataclass(slots=True)
class Imported:
    name: str
    ts_ms: int
    device_id: str
    profile_id: str = ""
    url: str = ""
    referrer: str = ""
    title: str = ""
    user_agent: str = ""
    ip: str = ""
    screen: str = ""
    language: str = ""
    revenue: float | None = None
    duration: int | None = None
    properties: dict[str, str] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)  # GIVEN columns and UTMs


class Enricher:
    """One per worker process: the geo table is loaded on the first record with an IP."""

    def __init__(self, geoip_path: str = "") -> None:
        self._geoip_path = geoip_path
        self._geo: GeoLookup | None = None

    def _geo_of(self, ip: str) -> tuple[str, str, str]:
        if self._geo is None:
            self._geo = GeoLookup(self._geoip_path)
            self._geo.load()
        return self._geo.lookup(ip)

    def values(self, rec: Imported) -> tuple[Any, ...] | str:
        """The event's columns in `ENRICHED` order, or the reason it is dropped."""
        ua = rec.user_agent
        if ua:
            if is_bot(ua):
                return "bot"
            agent = parse_user_agent(ua)
        else:
            agent = _NO_USER_AGENT
        page = parse_page(rec.url)
        ref = parse_referrer(rec.referrer, page.host)
        geo = self._geo_of(rec.ip) if rec.ip else NO_GEO
        revenue, duration = rec.revenue, rec.duration
        row = (
            rec.name,
            rec.device_id,
            rec.profile_id,
            *page[:3],
            *page[4:],
            rec.title[:500],
            ref.url,
            ref.name,
            channel(ref, page),
            *geo,
            *agent,
            rec.screen[:32],
            rec.language[:32],
            int(min(max(duration, 0), _MAX_DURATION)) if finite_number(duration) else 0,
            float(revenue) if finite_number(revenue) else 0.0,  # type: ignore[arg-type]
            rec.properties,
        )
        return _with_given(row, rec.given) if rec.given else row


def _with_given(row: tuple[Any, ...], given: dict[str, str]) -> tuple[Any, ...]:
    """A source's results fill the columns its record gave the parsers nothing for."""
    out = list(row)
    for key, value in given.items():
        if value and key in GIVABLE and not out[_POSITION[key]]:
            out[_POSITION[key]] = value
    return tuple(out)
