"""Hit → buffer item, as a list of named steps. Each step fills part of the event row or drops
the hit with a named reason (counted per project; never an error for the sender).

Time, salts and the geo table come in through `Context`, so every step is exact in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

from gatrix.buffer.keys import RedisKeys
from gatrix.buffer.rows import Pending, counter_item, event_item, link_item, profile_item
from gatrix.ids import new_id
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.enrich.referrer import (
    NO_REFERRER,
    PageInfo,
    channel,
    parse_page,
    parse_referrer,
)
from gatrix.ingest.enrich.useragent import is_bot, parse_user_agent
from gatrix.ingest.payloads import MAX_ID, Hit, property_value
from gatrix.ingest.salts import SaltBook
from gatrix.meta.projects import ClientInfo

FUTURE_TOLERANCE_MS = 60_000
DEFAULT_MAX_EVENT_AGE_MS = 31 * 86_400_000
_EPOCH_2000_MS = 946_684_800_000
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Request:
    """What the HTTP layer learned about the sender."""

    client: ClientInfo
    server_side: bool  # authenticated with a client secret
    ip: str
    user_agent: str
    browser: bool = True  # sent an Origin header, i.e. came from a web page
    sdk_name: str = ""
    sdk_version: str = ""
    received_ms: int = 0


@dataclass(slots=True)
class Context:
    salts: SaltBook
    geo: GeoLookup
    keys: RedisKeys
    # client times older than this are dropped: events spread over many months would make
    # every insert touch as many partitions (and the window keeps rollups of closed days final)
    max_event_age_ms: int = DEFAULT_MAX_EVENT_AGE_MS


@dataclass(slots=True)
class Draft:
    hit: Hit
    req: Request
    row: dict[str, Any] = field(default_factory=dict)
    ts_ms: int = 0
    page: PageInfo | None = None
    device_id: str = ""
    prev_device_id: str = ""
    # a known person from a backend that says nothing about the device (see `_person_only`)
    person_only: bool = False
    # resolved once per hit: three steps need the user agent, two the client IP
    ua: str = ""
    ip: str = ""


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str


Step = Callable[[Draft, Context], str | None]


@lru_cache(maxsize=4096)
def _second_text(second: int) -> str:
    t = time.gmtime(second)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
    )


def ch_time(ms: int) -> str:
    """Epoch milliseconds → ClickHouse DateTime64(3) text (UTC); the date part is cached."""
    return f"{_second_text(ms // 1000)}{ms % 1000:03d}"


def parse_client_time(value: Any) -> int | None:
    """`__timestamp` as ISO 8601 text or epoch (s or ms) → epoch ms; None when unusable."""
    if isinstance(value, str):
        return _text_time(value)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        ms = int(value if value > 1e11 else value * 1000)
    except (ValueError, OverflowError):
        return None
    return ms if ms >= _EPOCH_2000_MS else None


def _text_time(value: str) -> int | None:
    # on every event of an import, often twice: a text with an ISO date's dash skips the test
    # for epoch digits (which it cannot pass)
    text = value.strip()
    try:
        if len(text) < 5 or text[4] != "-":
            if text.replace(".", "", 1).isdigit():  # also true of "²", which float refuses
                return parse_client_time(float(text))
            if not text:
                return None
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return None
    return ms if ms >= _EPOCH_2000_MS else None


# --- steps (order matters: identity needs the user agent and timestamp)


def step_timestamp(d: Draft, ctx: Context) -> str | None:
    client_ms = parse_client_time(d.hit.reserved.get("__timestamp"))
    if client_ms is None or client_ms > d.req.received_ms + FUTURE_TOLERANCE_MS:
        client_ms = d.req.received_ms
    elif client_ms < d.req.received_ms - _max_age_ms(d.req.client, ctx):
        return "timestamp_too_old"
    d.ts_ms = client_ms
    d.row["created_at"] = ch_time(client_ms)
    d.row["received_at"] = ch_time(d.req.received_ms)
    return None


def _max_age_ms(client: ClientInfo, ctx: Context) -> int:
    # an event the project's retention would delete at its next pass is not stored at all
    if client.retention_days:
        return min(ctx.max_event_age_ms, client.retention_days * 86_400_000)
    return ctx.max_event_age_ms


def effective_user_agent(hit: Hit, req: Request) -> str:
    if req.server_side:
        forwarded = hit.reserved.get("__user_agent")
        if isinstance(forwarded, str):
            return forwarded[:1000]
    return req.user_agent


def step_bot(d: Draft, _: Context) -> str | None:
    ua = d.ua
    # Backends (a secret, or no Origin at all) are not visitors: their own UA says nothing
    # about the visitor, so only a UA they forward is judged.
    if (d.req.server_side or not d.req.browser) and "__user_agent" not in d.hit.reserved:
        return None
    return "bot" if is_bot(ua) else None


def step_user_agent(d: Draft, _: Context) -> str | None:
    # a backend's own user agent (an HTTP library) is not the visitor's browser: only one it
    # forwards is parsed (an app without a secret keeps its own, which names its OS)
    if d.req.server_side and "__user_agent" not in d.hit.reserved:
        return None
    info = parse_user_agent(d.ua)
    row = d.row
    row["browser"], row["browser_version"] = info.browser, info.browser_version
    row["os"], row["os_version"] = info.os, info.os_version
    row["device"], row["brand"], row["model"] = info.device, info.brand, info.model
    return None


def step_page(d: Draft, _: Context) -> str | None:
    url = d.hit.reserved.get("__path")
    page = parse_page(url if isinstance(url, str) else "")
    d.page = page
    row = d.row
    row["origin"], row["path"], row["query"] = page.origin, page.path, page.query
    row["utm_source"], row["utm_medium"] = page.utm_source, page.utm_medium
    row["utm_campaign"], row["utm_term"] = page.utm_campaign, page.utm_term
    row["utm_content"] = page.utm_content
    row["click_id_type"], row["click_id"] = page.click_id_type, page.click_id
    title = d.hit.reserved.get("__title")
    row["title"] = title[:500] if isinstance(title, str) else ""
    return None


def step_exclusions(d: Draft, _: Context) -> str | None:
    # the project's own traffic rules (gatrix/ingest/exclusions.py), compiled in ClientInfo
    rules = d.req.client.exclusions
    if rules is None:
        return None
    page = d.page
    return rules.reason(d.ip, page.host, page.path) if page else rules.reason(d.ip, "", "")


def step_referrer(d: Draft, _: Context) -> str | None:
    raw = d.hit.reserved.get("__referrer")
    page = d.page or parse_page("")
    ref = parse_referrer(raw, page.host) if isinstance(raw, str) else NO_REFERRER
    d.row["referrer"], d.row["referrer_name"] = ref.url, ref.name
    d.row["referrer_type"] = channel(ref, page)
    return None


def step_geo(d: Draft, ctx: Context) -> str | None:
    geo = ctx.geo.lookup(d.ip)
    d.row["country"], d.row["region"], d.row["city"] = geo.country, geo.region, geo.city
    return None


def client_ip(hit: Hit, req: Request) -> str:
    # `__ip` is trusted only from senders that proved they are the project's backend.
    forwarded = hit.reserved.get("__ip")
    if req.server_side and isinstance(forwarded, str) and forwarded:
        return forwarded[:64]
    return req.ip


def device_ids(hit: Hit, req: Request, ip: str, ua: str, ctx: Context) -> tuple[str, str]:
    """(device id, previous-salt device id) of a hit. The device stays anonymous when the
    person is known: the profile id travels beside it, and reports resolve the device to the
    person (README "Visitors"), so logging in neither renames the visitor nor splits the visit.
    A backend that forwards nothing about the visitor has no device to speak of: the profile id
    stands for it (and its visits are kept per person, see `_session_keys`)."""
    override = _device_override(hit)
    return _devices(hit, req, ip, ua, ctx, override, _person_only(hit, req, override))


def _devices(
    hit: Hit, req: Request, ip: str, ua: str, ctx: Context, override: str, person_only: bool
) -> tuple[str, str]:
    if override:
        return override, override
    if person_only:
        return hit.profile_id, hit.profile_id
    return ctx.salts.ids_at(req.received_ms, req.client.project_id, ip, ua)


def _device_override(hit: Hit) -> str:
    value = hit.reserved.get("__deviceId")
    text = property_value(value) if value is not None else None
    return text[:MAX_ID] if text else ""


def _person_only(hit: Hit, req: Request, override: str) -> bool:
    """A hit about a known person from a backend that says nothing about their device (no
    `__deviceId` (`override`), `__ip` or `__user_agent`)."""
    if not hit.profile_id or (req.browser and not req.server_side):
        return False
    return not override and not ("__ip" in hit.reserved or "__user_agent" in hit.reserved)


def step_identity(d: Draft, ctx: Context) -> str | None:
    override = _device_override(d.hit)
    d.person_only = _person_only(d.hit, d.req, override)
    d.device_id, d.prev_device_id = _devices(d.hit, d.req, d.ip, d.ua, ctx, override, d.person_only)
    return None


TRACK_STEPS: list[tuple[str, Step]] = [
    ("timestamp", step_timestamp),
    ("bot", step_bot),
    ("user_agent", step_user_agent),
    ("page", step_page),
    ("exclusions", step_exclusions),
    ("referrer", step_referrer),
    ("geo", step_geo),
    ("identity", step_identity),
]


def _extras(d: Draft) -> None:
    reserved, row = d.hit.reserved, d.row
    screen, language = reserved.get("__screen"), reserved.get("__language")
    row["screen"] = screen[:32] if isinstance(screen, str) else ""
    row["language"] = language[:32] if isinstance(language, str) else ""
    revenue, duration = reserved.get("__revenue"), reserved.get("__duration")
    row["revenue"] = float(revenue) if finite_number(revenue) else 0.0
    row["duration"] = int(min(max(duration, 0), 2**32 - 1)) if finite_number(duration) else 0


def finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) < 1e15
    )


def process_track(hit: Hit, req: Request, ctx: Context, steps=TRACK_STEPS) -> Pending | Dropped:
    d = Draft(hit=hit, req=req)
    d.ua, d.ip = effective_user_agent(hit, req), client_ip(hit, req)
    for _name, step in steps:
        reason = step(d, ctx)
        if reason is not None:
            return Dropped(reason)
    _extras(d)
    row = d.row
    row["id"] = new_id()
    row["project_id"] = req.client.project_id
    row["name"] = hit.name
    row["profile_id"] = hit.profile_id
    row["properties"] = hit.properties
    row["sdk_name"], row["sdk_version"] = req.sdk_name[:64], req.sdk_version[:64]
    session_key, prev_session_key = _session_keys(d, ctx)
    return event_item(
        row,
        d.ts_ms,
        session_key,
        prev_session_key,
        d.device_id,
        d.prev_device_id,
        hit.profile_id,
    )


def _session_keys(d: Draft, ctx: Context) -> tuple[str, str]:
    # A person tracked by a backend has their own visit key: a page that picks the profile id
    # as its `__deviceId` gets the device key of that name, never the person's visit.
    project = d.req.client.project_id
    if d.person_only:
        key = ctx.keys.person_session(project, d.hit.profile_id)
        return key, key
    return ctx.keys.session(project, d.device_id), ctx.keys.session(project, d.prev_device_id)


def process_profile(hit: Hit, req: Request, ctx: Context) -> list[Pending] | Dropped:
    """identify → a profile update row and the link of the sender's device to the person;
    alias → a link of one profile id to another; increment/decrement → a counter delta.
    A sender whose address the project excludes changes no one."""
    rules = req.client.exclusions
    if rules is not None and (reason := rules.reason(client_ip(hit, req), "", "")):
        return Dropped(reason)
    project = req.client.project_id
    if hit.type == "identify":
        row = {
            "project_id": project,
            "profile_id": hit.profile_id,
            "first_name": hit.first_name,
            "last_name": hit.last_name,
            "email": hit.email,
            "avatar": hit.avatar,
            "properties": hit.properties,
            "updated_at": ch_time(req.received_ms),
        }
        return [profile_item(row), *_device_links(hit, req, ctx)]
    if hit.type == "alias":
        return [_link(project, hit.alias, hit.profile_id, "alias", req.received_ms)]
    row = {
        "project_id": project,
        "profile_id": hit.profile_id,
        "property": hit.property,
        "value": hit.value,
    }
    return [counter_item(row)]


def sender_device(hit: Hit, req: Request, ctx: Context) -> str:
    """The device a profile call came from, as a track call from it would be told."""
    return device_ids(hit, req, client_ip(hit, req), effective_user_agent(hit, req), ctx)[0]


def _device_links(hit: Hit, req: Request, ctx: Context) -> list[Pending]:
    # Today's id only: a visit still running under yesterday's salt links that id with its
    # next event, which carries both (the identity_links view).
    device = sender_device(hit, req, ctx)
    if not device or device == hit.profile_id:
        return []
    return [_link(req.client.project_id, device, hit.profile_id, "device", req.received_ms)]


def _link(project: str, source: str, target: str, kind: str, at_ms: int) -> Pending:
    row = {
        "project_id": project,
        "source": source,
        "target": target,
        "kind": kind,
        "linked_at": ch_time(at_ms),
    }
    return link_item(row)
