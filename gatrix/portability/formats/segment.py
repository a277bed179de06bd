"""Segment-spec messages, one JSON object per line (a warehouse or S3 export, or a replay
log): `track`, `page` and `screen` become events, `identify` a profile update; other types
(`group`, `alias`) are skipped and counted.

- visitor: `anonymousId`, else `userId`; `userId` is also the profile id.
- time: `timestamp`, else `originalTimestamp`, `sentAt`, `receivedAt`.
- `track`: the event is named by `event`; `properties.revenue` is its revenue.
- `page`: a page view of `context.page.url` (or `properties.url`); `screen`: a page view
  of the app screen `name`, as its path; both keep `name` as a property (as live).
- `identify` with `anonymousId` and `userId` also links that device to the person.
- `context.userAgent`, `context.ip`, `context.locale`, `context.screen` and
  `context.page.referrer`/`title` feed the same enrichment as live hits; UTMs come from the
  page URL, or from `context.campaign` when the URL has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from gatrix.ingest.payloads import (
    MAX_PROPERTIES,
    MAX_VALUE,
    amount,
    has_control,
    property_value,
)
from gatrix.ingest.pipeline import parse_client_time
from gatrix.portability.enrich import Imported
from gatrix.portability.formats import Converted, ProfileRow

EVENT_TYPES = ("track", "page", "screen")
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
# page fields `properties` may carry (Segment's `page` call): columns, not properties
_NOT_PROPERTIES = ("url", "path", "referrer", "title", "search", "revenue")
_TRAITS = {"firstName": "first_name", "lastName": "last_name", "email": "email", "avatar": "avatar"}


_EMPTY: dict[str, Any] = {}


def _obj(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _EMPTY


def _id(value: Any) -> str | None:
    """An id as the live `/v1` routes take it: text or a number, cut to 200 characters;
    None for any other type or a control character (live answers those with a 400)."""
    if value is None:
        return ""
    if type(value) is str:
        text = value[:200]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)[:200]
    else:
        return None
    return None if has_control(text) else text


def _str(value: Any) -> str:
    return value if type(value) is str else ("" if value is None else str(value))


_TIMES = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")


def _time(msg: _Message) -> int | None:
    for key in _TIMES:
        ms = parse_client_time(getattr(msg, key))
        if ms is not None:
            return ms
    return None


# The fields an import reads of a message, decoded straight into structs: three times faster
# than a dict of every field, and attribute reads are cheaper than `dict.get`. A message
# whose `context`, `page` or `screen` is not an object fails that shape and is decoded as a
# dict instead, then read the same way (`_lenient`).
class _Page(msgspec.Struct):
    url: Any = None
    referrer: Any = None
    title: Any = None


class _Screen(msgspec.Struct):
    width: Any = None
    height: Any = None


class _Context(msgspec.Struct):
    userAgent: Any = None
    ip: Any = None
    locale: Any = None
    page: _Page | None = None
    screen: _Screen | None = None
    campaign: Any = None
    traits: Any = None


class _Message(msgspec.Struct):
    type: Any = None
    event: Any = None
    name: Any = None
    anonymousId: Any = None
    userId: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = None
    receivedAt: Any = None
    properties: Any = None
    context: _Context | None = None
    traits: Any = None


_message_decoder = msgspec.json.Decoder(_Message)
_any_decoder = msgspec.json.Decoder()
_NO_CONTEXT = _Context()
_NO_PAGE = _Page()


def _messages(data: bytes) -> Iterator[_Message | None]:
    """One message per non-blank line (None: not a JSON object), numbered as the session
    pass numbers them."""
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            yield _message_decoder.decode(line)
        except msgspec.ValidationError:
            yield _lenient(line)
        except (msgspec.DecodeError, RecursionError):
            yield None


def _lenient(line: bytes) -> _Message | None:
    """A message whose nested objects have other types: what is not an object reads as
    absent, as the live `/v1` routes read it."""
    try:
        msg = _any_decoder.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    return _struct(_Message, msg)


# the fields of these structs that are structs themselves
_NESTED: dict[type, dict[str, type]] = {
    _Message: {"context": _Context},
    _Context: {"page": _Page, "screen": _Screen},
}


def _struct(kind: type[Any], value: Any) -> Any:
    """A decoded dict as the struct `kind` (nested ones too); None when it is no object."""
    if type(value) is not dict:
        return None
    nested = _NESTED.get(kind, {})
    fields = {f: value.get(f) for f in kind.__struct_fields__}
    fields.update({f: _struct(inner, fields[f]) for f, inner in nested.items()})
    return kind(**fields)


def _flat(values: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if key in skip or len(out) >= MAX_PROPERTIES:
            continue
        text = property_value(value)
        if text is not None:
            out[str(key)[:200]] = text
    return out


def _properties(props: dict[str, Any], label: str) -> dict[str, str]:
    """A page's or screen's name is its `name` property, as /v1/page and /v1/screen keep it."""
    out = _flat(props, _NOT_PROPERTIES) if props else {}
    if label:
        out["name"] = label[:MAX_VALUE]
    return out


def _campaign(campaign: dict[str, Any]) -> dict[str, str]:
    return {utm: _str(campaign[key]) for key, utm in _CAMPAIGN.items() if campaign.get(key)}


class SegmentFormat:
    name = "segment"
    csv = False
    sessions = True

    def records(self, data: bytes, header: bytes) -> Iterator[Any]:
        return _messages(data)

    # the same decoding as `records`: a line the import will refuse must take no part in
    # the sessions (a lighter struct of the key fields alone let through lines whose other
    # fields the full decoder refuses, such as invalid UTF-8 in `properties`)
    key_records = records

    def key(self, msg: _Message | None) -> tuple[str, int] | None:
        if msg is None or msg.type not in EVENT_TYPES:
            return None
        anonymous, user = _id(msg.anonymousId), _id(msg.userId)
        if anonymous is None or user is None:
            return None
        visitor = anonymous or user
        ts = _time(msg)
        return (visitor, ts) if visitor and ts is not None else None

    def convert(self, msg: _Message | None) -> Converted:
        if msg is None:
            return "invalid"
        kind = msg.type
        user, anonymous = _id(msg.userId), _id(msg.anonymousId)
        if kind not in EVENT_TYPES and kind != "identify":
            return "not_an_event"
        if user is None or anonymous is None:
            return "invalid"
        if kind == "identify":
            return self._profile(msg, user, anonymous, _time(msg))
        ts = _time(msg)
        visitor = anonymous or user
        if ts is None or not visitor:
            return "invalid"
        label = _str(msg.name) if kind != "track" else ""
        ctx = msg.context or _NO_CONTEXT
        props = _obj(msg.properties)
        page = ctx.page or _NO_PAGE
        if kind == "track":
            name = _str(msg.event)[:200]
            if not name:
                return "invalid"
            url = _str(page.url)
        else:  # named, and the screen's path taken, as /v1/page and /v1/screen do: live and
            # imported data read alike
            name = "pageview" if kind == "page" else "screen_view"
            url = (_str(page.url) or _str(props.get("url"))) if kind == "page" else label
        screen = ctx.screen
        size = (
            f"{screen.width}x{screen.height}" if screen and screen.width and screen.height else ""
        )
        campaign = ctx.campaign
        given = _campaign(campaign) if type(campaign) is dict and campaign else _EMPTY
        return Imported(
            name=name,
            ts_ms=ts,
            device_id=visitor,
            profile_id=user,
            url=url,
            referrer=_str(page.referrer) or _str(props.get("referrer")),
            title=_str(page.title) or _str(props.get("title")),
            user_agent=_str(ctx.userAgent)[:1000],
            ip=_str(ctx.ip)[:64],
            screen=size,
            language=_str(ctx.locale),
            revenue=amount(props.get("revenue")) if kind == "track" else None,
            properties=_properties(props, label),
            given=given,
        )

    @staticmethod
    def _profile(msg: _Message, user: str, device: str, ts: int | None) -> Converted:
        if not user or ts is None:
            return "invalid"
        traits = _obj(msg.traits) or _obj((msg.context or _NO_CONTEXT).traits)
        row: dict[str, Any] = {"profile_id": user, "updated_at": ts}
        for trait, column in _TRAITS.items():
            row[column] = _str(traits.get(trait) or traits.get(column))[:500]
        row["properties"] = _flat(traits, (*_TRAITS, *_TRAITS.values()))
        # as /v1/identify: both ids link the device to the person
        return ProfileRow(row, device if device != user else "")
