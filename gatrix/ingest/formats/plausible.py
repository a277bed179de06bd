"""Plausible's `POST /api/event` body → one hit, and the domains it is for.

The tracker sends one-letter keys (`n` name, `u` URL, `d` domain, `r` referrer, `p` props,
`$` revenue, `i` interactive, `h` hash routing); the Events API for servers spells them out
(`name`, `url`, `domain`, …). Both are read. `p` may be an object or, from the legacy
script, a JSON string. `d` may list several sites (`"a.com,b.com"`): the event counts in each.

The current tracker also reports engagement when a page is left or hidden (`n` =
"engagement", `sd` scroll depth %, `e` engaged ms). Those become events named
`ENGAGEMENT_NAME`, which count neither as page views nor as custom events (see
`gatrix.pageviews`) and extend the visit: a visit lasts until its last event, engagement
included, so a one-page visit read for a minute lasts a minute instead of 0 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatrix.ingest.formats import Message, envelope, foreign_properties, text
from gatrix.ingest.payloads import (
    MAX_AMOUNT,
    MAX_NAME,
    MAX_VALUE,
    InvalidPayload,
    amount,
    decode_json,
)
from gatrix.pageviews import ENGAGEMENT_NAME

PAGEVIEW = "pageview"
MAX_DOMAINS = 10


@dataclass(slots=True)
class Event:
    domains: list[str]
    message: Message


def _field(doc: dict[str, Any], short: str, long: str) -> Any:
    value = doc.get(short)
    return doc.get(long) if value is None else value


def _number(value: Any, what: str) -> float:
    number = amount(value)
    if number is None:
        raise InvalidPayload("invalid_field", f"{what} must be a number below {MAX_AMOUNT:g}")
    return number


def domains_of(raw: str) -> list[str]:
    domains = list(dict.fromkeys(d.strip().lower() for d in raw.split(",") if d.strip()))
    if not domains:
        raise InvalidPayload("missing_field", "domain is required")
    if len(domains) > MAX_DOMAINS:
        raise InvalidPayload("invalid_field", f"at most {MAX_DOMAINS} domains per event")
    return domains


def parse(doc: Any) -> Event:
    if not isinstance(doc, dict):
        raise InvalidPayload("invalid_body", "body must be a JSON object")
    name = text(_field(doc, "n", "name"), "name", MAX_NAME, required=True)
    url = text(_field(doc, "u", "url"), "url", MAX_VALUE, required=True)
    domains = domains_of(text(_field(doc, "d", "domain"), "domain", 1000, required=True))
    props = _field(doc, "p", "props")
    if isinstance(props, str):  # the legacy script sends the props as JSON text
        props = decode_json(props.encode()) if props.strip() else None
    properties: dict[str, Any] = foreign_properties(props, "props")
    properties["__path"] = url
    referrer = _field(doc, "r", "referrer")
    properties["__referrer"] = text(referrer, "referrer", MAX_VALUE)
    revenue = _field(doc, "$", "revenue")
    if revenue is not None:
        if not isinstance(revenue, dict) or "amount" not in revenue:
            raise InvalidPayload("invalid_field", "revenue must be {amount, currency}")
        properties["__revenue"] = _number(revenue["amount"], "revenue.amount")
        currency = text(revenue.get("currency"), "revenue.currency", 3)
        if currency:
            properties["currency"] = currency.upper()
    if _field(doc, "i", "interactive") is False:
        properties["interactive"] = "false"
    if name == "engagement":
        name = ENGAGEMENT_NAME
        engaged = doc.get("e")
        if engaged is not None:
            properties["__duration"] = max(0.0, _number(engaged, "e"))
        depth = doc.get("sd")
        if depth is not None:
            properties["scroll_depth"] = int(min(max(_number(depth, "sd"), 0.0), 100.0))
    return Event(domains, Message(envelope("track", {"name": name, "properties": properties})))
