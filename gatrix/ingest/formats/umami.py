"""Umami's `POST /api/send` body → hits.

`{"type": "event" | "identify", "payload": {website, hostname, url, referrer, title, screen,
language, name?, data?, id?, tag?, timestamp?}}`. Tracker generations differ: the 2.x
tracker sends `url` as the page's path URI-encoded once more (`encodeURI`) and the title
URI-component-encoded; the current one sends the full `location.href` and the title as it is.
A page view has no `name`; `id` is the distinct id the page gave `umami.identify(id)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin

from gatrix.ingest.formats import Message, envelope, foreign_properties, text
from gatrix.ingest.payloads import MAX_ID, MAX_NAME, MAX_VALUE, InvalidPayload

PAGEVIEW = "pageview"
# Umami's own tracker also reports web vitals and script errors; we keep neither
IGNORED_TYPES = ("performance", "error")


@dataclass(slots=True)
class Collect:
    website: str
    message: Message | None  # None: answered and not stored, for `dropped`
    dropped: str = ""


def _absolute(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _join(base: str, url: str, what: str) -> str:
    """`url` on the page's site; a host or URL no URL can be made of (`[`) is a bad field."""
    try:
        return urljoin(base, url)
    except ValueError as exc:
        raise InvalidPayload(
            "invalid_field", f"payload.hostname and {what} make no valid URL"
        ) from exc


def parse(doc: Any) -> Collect:
    if not isinstance(doc, dict):
        raise InvalidPayload("invalid_body", 'body must be a JSON object {"type", "payload"}')
    kind = doc.get("type")
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise InvalidPayload("invalid_payload", "payload must be a JSON object")
    website = text(payload.get("website"), "payload.website", 64, required=True)
    if kind in IGNORED_TYPES:
        return Collect(website, None, "unsupported_type")
    if kind not in ("event", "identify"):
        raise InvalidPayload("invalid_type", f"type must be event or identify (got {kind!r})")
    profile_id = text(payload.get("id"), "payload.id", MAX_ID)
    data = foreign_properties(payload.get("data"), "payload.data")
    if kind == "identify":
        if not profile_id:
            # 2.x `umami.identify(data)` describes an anonymous session: no person to update
            return Collect(website, None, "anonymous_identify")
        return Collect(
            website, Message(envelope("identify", {"profileId": profile_id, "properties": data}))
        )
    hostname = text(payload.get("hostname"), "payload.hostname", 253)
    url = text(payload.get("url"), "payload.url", MAX_VALUE)
    title = text(payload.get("title"), "payload.title", MAX_VALUE)
    referrer = text(payload.get("referrer"), "payload.referrer", MAX_VALUE)
    legacy = bool(url) and not _absolute(url)
    if legacy:  # the 2.x tracker encoded what the browser had already encoded
        url, title, referrer = unquote(url), unquote(title), unquote(referrer)
    base = f"https://{hostname}/" if hostname else ""
    page = url if _absolute(url) or not base else _join(base, url, "payload.url")
    # after a client-side navigation the referrer is the previous path on the same site
    if referrer and not _absolute(referrer) and base:
        referrer = _join(base, referrer, "payload.referrer")
    properties: dict[str, Any] = dict(data)
    tag = text(payload.get("tag"), "payload.tag", MAX_NAME)
    if tag:
        properties["tag"] = tag
    properties["__path"] = page
    properties["__title"] = title
    properties["__referrer"] = referrer
    properties["__screen"] = text(payload.get("screen"), "payload.screen", 32)
    properties["__language"] = text(payload.get("language"), "payload.language", 35)
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        properties["__timestamp"] = timestamp  # epoch seconds; the pipeline bounds it
    name = text(payload.get("name"), "payload.name", MAX_NAME)
    body: dict[str, Any] = {"name": name or PAGEVIEW, "properties": properties}
    if profile_id:
        body["profileId"] = profile_id
    return Collect(website, Message(envelope("track", body)))
