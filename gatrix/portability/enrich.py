"""An imported record → an event row, through the live pipeline's own steps.

Formats describe what they know as an `Imported`: a full page URL, a referrer URL, and the
visitor's user agent and IP when the source kept them. The pipeline's steps then fill the
same columns as for a live hit (user agent → browser/OS/device, URL → path and UTMs, referrer
→ channel, IP → geo). What a source knows only as results (Umami keeps browser names and
countries, not user agents or IPs) is taken as given where the step had nothing to read.
Identity is not a step here: imports name their visitor ids themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatrix.ingest import pipeline
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.payloads import Hit
from gatrix.meta.projects import ClientInfo

# columns a format may give as results, used when the matching step had no input
GIVEN = ("browser", "browser_version", "os", "os_version", "device", "country", "region", "city")
_UTMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


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

    def __init__(self, project_id: str, geoip_path: str = "") -> None:
        self.client = ClientInfo(project_id, project_id, "root", None, (), "UTC")
        self._geoip_path = geoip_path
        self._geo: GeoLookup | None = None

    @property
    def context(self) -> pipeline.Context:
        if self._geo is None:
            self._geo = GeoLookup(self._geoip_path)
            self._geo.load()
        return pipeline.Context(salts=None, geo=self._geo, keys=None)  # type: ignore[arg-type]

    def row(self, rec: Imported) -> dict[str, Any] | str:
        """The event's columns (no ids, times or session), or the reason it is dropped."""
        reserved: dict[str, Any] = {"__path": rec.url, "__referrer": rec.referrer}
        if rec.title:
            reserved["__title"] = rec.title
        if rec.user_agent:
            reserved["__user_agent"] = rec.user_agent
        if rec.screen:
            reserved["__screen"] = rec.screen
        if rec.language:
            reserved["__language"] = rec.language
        if rec.revenue is not None:
            reserved["__revenue"] = rec.revenue
        if rec.duration is not None:
            reserved["__duration"] = rec.duration
        hit = Hit(type="track", name=rec.name, profile_id=rec.profile_id, reserved=reserved)
        # a backend-like sender: the forwarded user agent is judged and the IP believed
        req = pipeline.Request(
            client=self.client,
            server_side=True,
            ip=rec.ip,
            user_agent=rec.user_agent,
            browser=False,
            received_ms=rec.ts_ms,
        )
        d = pipeline.Draft(hit=hit, req=req, ua=rec.user_agent, ip=rec.ip)
        if rec.user_agent:
            reason = pipeline.step_bot(d, None)  # type: ignore[arg-type]
            if reason:
                return reason
            pipeline.step_user_agent(d, None)  # type: ignore[arg-type]
        pipeline.step_page(d, None)  # type: ignore[arg-type]
        pipeline.step_referrer(d, None)  # type: ignore[arg-type]
        if rec.ip:
            pipeline.step_geo(d, self.context)
        # screen, language, revenue and duration: the pipeline's one rule for them
        pipeline._extras(d)
        row = d.row
        for key, value in rec.given.items():
            if value and not row.get(key):
                row[key] = value
        for key in GIVEN:
            row.setdefault(key, "")
        for key in _UTMS:
            row.setdefault(key, "")
        row["name"] = rec.name
        row["device_id"] = rec.device_id
        row["profile_id"] = rec.profile_id
        row["properties"] = rec.properties
        row.setdefault("brand", "")
        row.setdefault("model", "")
        return row
