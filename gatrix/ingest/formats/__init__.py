"""Other tools' wire formats → the `Hit`s `/track` produces, as pure functions.

Each format builds the OpenPanel envelope its message means and hands it to the same parser
`/track` uses (`parse_envelope`), so names, ids and properties are validated by one set of
rules, and an envelope type `/track` learns (e.g. `alias`) is learnt here too. What a format
says about the page, time or visitor goes into the reserved properties the pipeline reads.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from gatrix.ingest.payloads import (
    MAX_PROPERTIES,
    RESERVED,
    Hit,
    InvalidPayload,
    parse_envelope,
)


@dataclass(slots=True)
class Message:
    """One hit a foreign message maps to, and the sender's id for it (retries repeat it)."""

    hit: Hit
    message_id: str = ""


def foreign_properties(raw: Any, what: str) -> dict[str, Any]:
    """A foreign format's own properties: an object, whose keys may not pose as the reserved
    ones (`__ip`, `__timestamp`, …) that only this module sets."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidPayload("invalid_properties", f"{what} must be a JSON object")
    if len(raw) > MAX_PROPERTIES:
        raise InvalidPayload(
            "too_many_properties", f"{what} has {len(raw)} keys; at most {MAX_PROPERTIES}"
        )
    return {key: value for key, value in raw.items() if key not in RESERVED}


def envelope(kind: str, payload: dict[str, Any]) -> Hit:
    """The hit `/track` would make of `{"type": kind, "payload": payload}`."""
    hit, _, _ = parse_envelope({"type": kind, "payload": payload})
    return hit


def text(value: Any, what: str, limit: int, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise InvalidPayload("missing_field", f"{what} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidPayload("invalid_field", f"{what} must be a string")
    if len(value) > limit:
        raise InvalidPayload("invalid_field", f"{what} is longer than {limit} characters")
    return value


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, refused once it inflates past `limit` bytes (a small bomb stays small)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidPayload("invalid_body", f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InvalidPayload(
            "body_too_large", f"request body inflates past {limit} bytes", status=413
        )
    if not inflater.eof:
        raise InvalidPayload("invalid_body", "gzip body is truncated")
    return out
