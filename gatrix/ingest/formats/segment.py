"""The Segment spec (also RudderStack's) → hits: `POST /v1/track|identify|page|screen|alias|
group` with one message, `POST /v1/batch` with `{"batch": [...], "sentAt", "context"?}`.

- `anonymousId` is the visitor (device id), `userId` the person (profile id); a message
  with only `userId` is that person's visitor too.
- Time: `timestamp` when the message has one; else `originalTimestamp` moved by the
  sender's clock skew (the time between its `sentAt` and our receipt), as Segment does; else
  the time we received it.
- `context.ip` and `context.userAgent` speak for the visitor only when the sender proved it
  is the project's backend (`trusted`: the client secret); otherwise the request's own.
- `page` is a page view (`properties.url` or `context.page.url`), `screen` an app screen
  view, `identify` a profile update from `traits` (with both ids, also the link of the
  `anonymousId` device to the person), `alias` an identity link (previousId → userId)
  through `/track`'s `alias` envelope; `group` is not stored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from gatrix.ingest.formats import Message, envelope, foreign_properties, text
from gatrix.ingest.payloads import MAX_ID, MAX_NAME, MAX_VALUE, InvalidPayload, amount
from gatrix.ingest.pipeline import parse_client_time

KINDS = ("track", "identify", "page", "screen", "alias", "group")
MAX_BATCH = 1000
PAGEVIEW, SCREEN_VIEW = "pageview", "screen_view"
_PROFILE_TRAITS = {
    "firstName": "firstName",
    "first_name": "firstName",
    "lastName": "lastName",
    "last_name": "lastName",
    "email": "email",
    "avatar": "avatar",
}


@dataclass(slots=True)
class Parsed:
    messages: list[Message] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why each message not stored was not


def credentials(authorization: str) -> tuple[str, str]:
    """(write key, secret) from HTTP Basic. Segment's libraries send the write key as the
    user with an empty password, so a write key given as `clientId:secret` arrives as user
    `clientId` and password `secret:`; that one trailing colon is not part of the secret."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidPayload(
            "invalid_credentials", "Authorization is not valid Basic credentials", status=401
        ) from None
    user, _, password = decoded.partition(":")
    return user.strip(), password.removesuffix(":")


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload("invalid_field", f"{what} must be a JSON object")
    return value


def event_time(msg: dict[str, Any], sent_at: Any, received_ms: int) -> int | None:
    """Epoch ms of a message by Segment's rule (see the module), None for "when received"."""
    explicit = parse_client_time(msg.get("timestamp"))
    if explicit is not None:
        return explicit
    original = parse_client_time(msg.get("originalTimestamp"))
    if original is None:
        return None
    sent = parse_client_time(msg.get("sentAt", sent_at))
    return original + (received_ms - sent) if sent is not None else original


_PAGE_KEYS = ("url", "path", "search", "title", "referrer")


def _page_fields(props: dict[str, Any], page: dict[str, Any], reserved: dict[str, Any]) -> None:
    """A page's URL, title and referrer into the columns (a page call's properties repeat
    them; they are not kept twice)."""
    props = {key: props.pop(key) for key in _PAGE_KEYS if key in props}
    url = props.get("url") or page.get("url")
    if not url:
        path = props.get("path") or page.get("path") or ""
        url = f"{path}{props.get('search') or page.get('search') or ''}" if path else ""
    title = props.get("title") or page.get("title")
    referrer = props.get("referrer") or page.get("referrer")
    for key, value, what in (
        ("__path", url, "page url"),
        ("__title", title, "page title"),
        ("__referrer", referrer, "page referrer"),
    ):
        if value:
            reserved[key] = text(value, what, MAX_VALUE)


def _message(
    kind: str,
    msg: dict[str, Any],
    batch_context: dict[str, Any],
    sent_at: Any,
    received_ms: int,
    trusted: bool,
) -> Message | str:
    """One message as a hit, or the reason it is not stored."""
    message_id = text(msg.get("messageId"), "messageId", MAX_ID)
    user_id = text(_id(msg.get("userId")), "userId", MAX_ID)
    anonymous_id = text(_id(msg.get("anonymousId")), "anonymousId", MAX_ID)
    if kind == "group":
        return "unsupported_type"
    if kind == "alias":
        previous = text(_id(msg.get("previousId")), "previousId", MAX_ID, required=True)
        if not user_id:
            raise InvalidPayload("missing_field", "userId is required")
        return Message(envelope("alias", {"profileId": user_id, "alias": previous}), message_id)
    if not user_id and not anonymous_id:
        raise InvalidPayload("missing_field", "userId or anonymousId is required")
    context = {**batch_context, **_object(msg.get("context"), "context")}
    if kind == "identify":
        traits = foreign_properties(msg.get("traits") or context.get("traits"), "traits")
        body: dict[str, Any] = {"profileId": user_id or anonymous_id}
        for key, value in list(traits.items()):
            if key in _PROFILE_TRAITS and isinstance(value, str):
                body[_PROFILE_TRAITS[key]] = value
                del traits[key]
        if user_id and anonymous_id:
            # the device the person logged in on (as a track call carrying both ids says)
            traits["__deviceId"] = anonymous_id
        body["properties"] = traits
        return Message(envelope("identify", body), message_id)
    props = foreign_properties(msg.get("properties"), "properties")
    reserved: dict[str, Any] = {}
    if kind == "track":
        name = text(msg.get("event"), "event", MAX_NAME, required=True)
        _page_fields({}, _object(context.get("page"), "context.page"), reserved)
    else:
        name = PAGEVIEW if kind == "page" else SCREEN_VIEW
        label = text(msg.get("name"), "name", MAX_NAME)
        if label:
            props["name"] = label
        if kind == "page":
            _page_fields(props, _object(context.get("page"), "context.page"), reserved)
        elif label:
            reserved["__path"] = label  # an app screen has a name, not a URL
    revenue = amount(props.pop("revenue", None))
    if revenue is not None:
        reserved["__revenue"] = revenue
    # a message with only userId is that person's visitor: no cookieless id of the backend
    reserved["__deviceId"] = anonymous_id or user_id
    at = event_time(msg, sent_at, received_ms)
    if at is not None:
        reserved["__timestamp"] = at
    locale = context.get("locale")
    if isinstance(locale, str):
        reserved["__language"] = locale[:32]
    screen = context.get("screen")
    if isinstance(screen, dict) and screen.get("width") and screen.get("height"):
        reserved["__screen"] = f"{screen['width']}x{screen['height']}"[:32]
    if trusted:
        if isinstance(context.get("ip"), str):
            reserved["__ip"] = context["ip"]
        if isinstance(context.get("userAgent"), str):
            reserved["__user_agent"] = context["userAgent"]
    payload: dict[str, Any] = {"name": name, "properties": {**props, **reserved}}
    if user_id:
        payload["profileId"] = user_id
    return Message(envelope("track", payload), message_id)


def _id(value: Any) -> Any:
    # ids may be numbers in the spec; they are kept as their text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def parse(kind: str, doc: Any, received_ms: int, trusted: bool) -> Parsed:
    """`kind` is the endpoint: one of KINDS, or `batch`."""
    if not isinstance(doc, dict):
        raise InvalidPayload("invalid_body", "body must be a JSON object")
    if kind == "batch":
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise InvalidPayload("invalid_body", "batch must be a JSON array of messages")
        if len(batch) > MAX_BATCH:
            raise InvalidPayload("batch_too_large", f"at most {MAX_BATCH} messages per batch")
        context = _object(doc.get("context"), "context")
        items = [(n, m) for n, m in enumerate(batch)]
    else:
        context, items = {}, [(None, doc)]
    parsed = Parsed()
    for n, msg in items:
        where = f"batch[{n}]: " if n is not None else ""
        try:
            if not isinstance(msg, dict):
                raise InvalidPayload("invalid_body", "a message must be a JSON object")
            msg_kind = msg.get("type", kind) if n is not None else kind
            if msg_kind not in KINDS:
                raise InvalidPayload(
                    "invalid_type", f"type must be one of {', '.join(KINDS)} (got {msg_kind!r})"
                )
            out = _message(msg_kind, msg, context, doc.get("sentAt"), received_ms, trusted)
        except InvalidPayload as exc:
            # nothing of a request with a bad message is stored: the sender sees which one
            raise InvalidPayload(exc.code, where + exc.detail, exc.status) from None
        if isinstance(out, str):
            parsed.ignored.append(out)
        else:
            parsed.messages.append(out)
    return parsed
