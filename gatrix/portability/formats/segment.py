"""Segment-spec messages, one JSON object per line (a warehouse or S3 export, or a replay
log): `track`, `page` and `screen` become events, `identify` a profile update; other types
(`group`, `alias`) are skipped and counted.

- visitor: `anonymousId`, else `userId`; `userId` is also the profile id.
- time: `timestamp`, else `originalTimestamp`, `sentAt`, `receivedAt`.
- `track`: the event is named by `event`; `properties.revenue` is its revenue.
- `page`: a page view of `context.page.url` (or `properties.url`); `screen`: a page view
  of the app screen `name`, as the path `/name`.
- `context.userAgent`, `context.ip`, `context.locale`, `context.screen` and
  `context.page.referrer`/`title` feed the same enrichment as live hits; UTMs come from the
  page URL, or from `context.campaign` when the URL has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gatrix.ingest.payloads import MAX_PROPERTIES, property_value
from gatrix.ingest.pipeline import parse_client_time
from gatrix.portability.enrich import Imported
from gatrix.portability.formats import Converted, ProfileRow, ndjson_records

EVENT_TYPES = ("track", "page", "screen")
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
_TRAITS = {"firstName": "first_name", "lastName": "last_name", "email": "email", "avatar": "avatar"}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _time(msg: dict[str, Any]) -> int | None:
    for key in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        ms = parse_client_time(msg.get(key))
        if ms is not None:
            return ms
    return None


def _flat(values: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if key in skip or len(out) >= MAX_PROPERTIES:
            continue
        text = property_value(value)
        if text is not None:
            out[str(key)[:200]] = text
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


class SegmentFormat:
    name = "segment"
    csv = False
    sessions = True

    def records(self, data: bytes, header: bytes) -> Iterator[Any]:
        return ndjson_records(data)

    def key(self, msg: Any) -> tuple[str, int] | None:
        if not isinstance(msg, dict) or msg.get("type") not in EVENT_TYPES:
            return None
        visitor = _str(msg.get("anonymousId")) or _str(msg.get("userId"))
        ts = _time(msg)
        return (visitor[:200], ts) if visitor and ts is not None else None

    def convert(self, msg: Any) -> Converted:
        if not isinstance(msg, dict):
            return "invalid"
        kind = msg.get("type")
        ts = _time(msg)
        user = _str(msg.get("userId"))[:200]
        if kind == "identify":
            return self._profile(msg, user, ts)
        if kind not in EVENT_TYPES:
            return "not_an_event"
        visitor = _str(msg.get("anonymousId"))[:200] or user
        if ts is None or not visitor:
            return "invalid"
        ctx = _obj(msg.get("context"))
        props = _obj(msg.get("properties"))
        page = _obj(ctx.get("page"))
        if kind == "track":
            name = _str(msg.get("event"))[:200]
            if not name:
                return "invalid"
            url = _str(page.get("url"))
        elif kind == "page":
            name = "pageview"  # as /v1/page names it: live and imported data read alike
            url = _str(page.get("url")) or _str(props.get("url"))
        else:
            name = "screen_view"
            url = "/" + _str(msg.get("name")).lstrip("/")
        screen = _obj(ctx.get("screen"))
        width, height = screen.get("width"), screen.get("height")
        given = {
            utm: _str(_obj(ctx.get("campaign")).get(key))
            for key, utm in _CAMPAIGN.items()
            if _obj(ctx.get("campaign")).get(key)
        }
        return Imported(
            name=name,
            ts_ms=ts,
            device_id=visitor,
            profile_id=user,
            url=url,
            referrer=_str(page.get("referrer")) or _str(props.get("referrer")),
            title=_str(page.get("title")) or _str(props.get("title")),
            user_agent=_str(ctx.get("userAgent"))[:1000],
            ip=_str(ctx.get("ip"))[:64],
            screen=f"{width}x{height}" if width and height else "",
            language=_str(ctx.get("locale")),
            revenue=_number(props.get("revenue")) if kind == "track" else None,
            properties=_flat(props, ("url", "path", "referrer", "title", "search", "revenue")),
            given=given,
        )

    @staticmethod
    def _profile(msg: dict[str, Any], user: str, ts: int | None) -> Converted:
        if not user or ts is None:
            return "invalid"
        traits = _obj(msg.get("traits")) or _obj(_obj(msg.get("context")).get("traits"))
        row: dict[str, Any] = {"profile_id": user, "updated_at": ts}
        for trait, column in _TRAITS.items():
            row[column] = _str(traits.get(trait) or traits.get(column))[:500]
        row["properties"] = _flat(traits, (*_TRAITS, *_TRAITS.values()))
        return ProfileRow(row)
