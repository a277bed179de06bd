"""Wire formats → validated `Hit`s. Every rejection is an `InvalidPayload` with a code and a
sentence a developer can act on; nothing invalid gets past this module.

OpenPanel envelope: `{"type": T, "payload": {...}, "clientId"?, "clientSecret"?}`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

MAX_NAME = 200
MAX_PROPERTIES = 100
MAX_KEY = 200
MAX_VALUE = 2000
MAX_ID = 200
TYPES = ("track", "identify", "alias", "increment", "decrement")
IGNORED_TYPES = ("group", "assign_group", "replay")
# Reserved property keys the OpenPanel SDKs send; they fill columns, not the properties map.
RESERVED = (
    "__path",
    "__title",
    "__referrer",
    "__timestamp",
    "__ip",
    "__deviceId",
    "__revenue",
    "__screen",
    "__language",
    "__duration",
    "__user_agent",
)

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class InvalidPayload(Exception):
    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(slots=True)
class Hit:
    type: str
    name: str = ""
    profile_id: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    reserved: dict[str, Any] = field(default_factory=dict)
    # identify
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    avatar: str = ""
    # increment / decrement
    property: str = ""
    value: float = 1.0
    # alias: another id of the person `profile_id` (README "Visitors")
    alias: str = ""


def decode_json(body: bytes) -> Any:
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidPayload("invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec stops at the interpreter's recursion limit (~1,000 levels)
        raise InvalidPayload("invalid_json", "body is nested too deeply") from None


MAX_COUNTER_STEP = 1e15
# the largest amount (revenue, a duration) a sender may give, in size
MAX_AMOUNT = 1e15


def amount(value: Any) -> float | None:
    """A number sent as JSON or as text, as a float; None when it is neither, not finite, or
    MAX_AMOUNT or more in size. A JSON integer can have any number of digits, and float() of
    a huge one raises, so integers are judged before they are converted."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) >= MAX_AMOUNT:
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) < MAX_AMOUNT else None


def _text(value: Any, what: str, limit: int, required: bool = False) -> str:
    if value is None:
        if required:
            raise InvalidPayload("missing_field", f"{what} is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload("invalid_field", f"{what} must be a string")
    text = str(value)
    if required and not text.strip():
        raise InvalidPayload("missing_field", f"{what} must not be empty")
    if len(text) > limit:
        raise InvalidPayload("invalid_field", f"{what} is longer than {limit} characters")
    return text


def _person_id(value: Any, what: str, required: bool = False) -> str:
    """A profile id: text as `_text`, without control characters. The People pages, the
    profiles API and erasure refuse such ids, so a person stored with one could never be
    opened or erased on request."""
    text = _text(value, what, MAX_ID, required)
    if has_control(text):
        raise InvalidPayload("invalid_field", f"{what} must not contain control characters")
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether an id holds a control character (refused in device and profile ids)."""
    return _CONTROL.search(text) is not None


def _device_id(value: Any) -> Any:
    """`__deviceId`: text or a number, without control characters (the People pages could
    not open such a visitor, as for profile ids), cut to MAX_ID; None is no device id."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload("invalid_field", "__deviceId must be a string")
    text = str(value)[:MAX_ID]
    if has_control(text):
        raise InvalidPayload("invalid_field", "__deviceId must not contain control characters")
    return text


def property_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value[:MAX_VALUE]
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return str(value)
    # nested objects and arrays are kept as their JSON text
    try:
        return _encoder.encode(value).decode()[:MAX_VALUE]
    except RecursionError:
        # decoded a little deeper in the stack than it is encoded here: refuse, never crash
        raise InvalidPayload(
            "invalid_properties", "a property value is nested too deeply"
        ) from None


def parse_properties(raw: Any) -> tuple[dict[str, str], dict[str, Any]]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise InvalidPayload("invalid_properties", "properties must be a JSON object")
    user_keys = sum(1 for key in raw if key not in RESERVED)
    if user_keys > MAX_PROPERTIES:
        raise InvalidPayload(
            "too_many_properties", f"{user_keys} properties; at most {MAX_PROPERTIES} are allowed"
        )
    properties: dict[str, str] = {}
    reserved: dict[str, Any] = {}
    for key, value in raw.items():
        if key in RESERVED:
            reserved[key] = _device_id(value) if key == "__deviceId" else value
            continue
        if not key or len(key) > MAX_KEY:
            raise InvalidPayload(
                "invalid_properties", f"property names must be 1 to {MAX_KEY} characters"
            )
        text = property_value(value)
        if text is not None:
            properties[key] = text
    return properties, reserved


def parse_envelope(doc: Any) -> tuple[Hit, str, str]:
    """Returns the hit and the clientId / clientSecret given in the body (or empty)."""
    if not isinstance(doc, dict):
        raise InvalidPayload("invalid_body", 'body must be a JSON object {"type", "payload"}')
    kind = doc.get("type")
    if kind in IGNORED_TYPES:
        # OpenPanel SDKs send these too; any non-2xx reply would make them retry 3 times
        raise InvalidPayload("unsupported_type", f"{kind} events are not stored", status=202)
    if not isinstance(kind, str) or kind not in TYPES:
        raise InvalidPayload(
            "invalid_type", f"type must be one of {', '.join(TYPES)} (got {kind!r})"
        )
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise InvalidPayload("invalid_payload", "payload must be a JSON object")
    client_id = doc.get("clientId") or ""
    client_secret = doc.get("clientSecret") or ""
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        raise InvalidPayload("invalid_field", "clientId and clientSecret must be strings")
    return _PARSERS[kind](payload), client_id, client_secret


def _track(payload: dict[str, Any]) -> Hit:
    name = _text(payload.get("name"), "payload.name", MAX_NAME, required=True)
    properties, reserved = parse_properties(payload.get("properties"))
    # The Gatrix backend proxy sends the page path beside the name.
    if "path" in payload and "__path" not in reserved:
        reserved["__path"] = _text(payload.get("path"), "payload.path", MAX_VALUE)
    profile_id = _person_id(payload.get("profileId"), "payload.profileId")
    return Hit(
        type="track",
        name=name,
        # blank is anonymous, as in identify (where it is refused)
        profile_id=profile_id if profile_id.strip() else "",
        properties=properties,
        reserved=reserved,
    )


def _identify(payload: dict[str, Any]) -> Hit:
    # reserved keys say which device logged in (`__deviceId`, or a backend's `__ip` and
    # `__user_agent`); they are not properties of the person
    properties, reserved = parse_properties(payload.get("properties"))
    return Hit(
        type="identify",
        reserved=reserved,
        profile_id=_person_id(payload.get("profileId"), "payload.profileId", required=True),
        first_name=_text(payload.get("firstName"), "payload.firstName", 500),
        last_name=_text(payload.get("lastName"), "payload.lastName", 500),
        email=_text(payload.get("email"), "payload.email", 500),
        avatar=_text(payload.get("avatar"), "payload.avatar", MAX_VALUE),
        properties=properties,
    )


def _alias(payload: dict[str, Any]) -> Hit:
    profile_id = _person_id(payload.get("profileId"), "payload.profileId", required=True)
    alias = _person_id(payload.get("alias"), "payload.alias", required=True)
    if alias == profile_id:
        raise InvalidPayload("invalid_field", "payload.alias must differ from payload.profileId")
    return Hit(type="alias", profile_id=profile_id, alias=alias)


def _finite_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        # JSON integers are unbounded: one with 400 digits has no float and overflows
        amount = float(value)
    except OverflowError:
        return None
    return amount if math.isfinite(amount) else None


def _counter(kind: str) -> Any:
    def parse(payload: dict[str, Any]) -> Hit:
        value = payload.get("value", 1)
        if value is None:
            value = 1
        amount = _finite_float(value)
        # bounded, so that no run of increments can add up to infinity (shown as null)
        if amount is None or abs(amount) > MAX_COUNTER_STEP:
            raise InvalidPayload(
                "invalid_field",
                f"payload.value must be a number between -{MAX_COUNTER_STEP:g} and "
                f"{MAX_COUNTER_STEP:g}",
            )
        return Hit(
            type=kind,
            profile_id=_person_id(payload.get("profileId"), "payload.profileId", required=True),
            property=_text(payload.get("property"), "payload.property", MAX_KEY, required=True),
            value=amount if kind == "increment" else -amount,
        )

    return parse


_PARSERS = {
    "track": _track,
    "identify": _identify,
    "alias": _alias,
    "increment": _counter("increment"),
    "decrement": _counter("decrement"),
}
