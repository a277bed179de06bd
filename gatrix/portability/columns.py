"""The columns a raw export carries and an import writes, and their Arrow types: events,
profiles, identity links and profile counters (the four kinds of an export).

The export leaves out `project_id` (an export is of one project; an import names its own).
CSV cannot carry a map, so `properties` travels there as a JSON object in one cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, chain

import pyarrow as pa

_S = pa.string()
# naive: ClickHouse reads Arrow timestamps as UTC epoch values, and strings cast to it
_TIME = pa.timestamp("ms")

EVENT_TYPES: dict[str, pa.DataType] = {
    "id": _S,
    "name": _S,
    "device_id": _S,
    "profile_id": _S,
    "session_id": _S,
    "session_start": _TIME,
    "created_at": _TIME,
    "received_at": _TIME,
    "origin": _S,
    "path": _S,
    "query": _S,
    "title": _S,
    "referrer": _S,
    "referrer_name": _S,
    "referrer_type": _S,
    "utm_source": _S,
    "utm_medium": _S,
    "utm_campaign": _S,
    "utm_term": _S,
    "utm_content": _S,
    "click_id_type": _S,
    "click_id": _S,
    "country": _S,
    "region": _S,
    "city": _S,
    "browser": _S,
    "browser_version": _S,
    "os": _S,
    "os_version": _S,
    "device": _S,
    "brand": _S,
    "model": _S,
    "screen": _S,
    "language": _S,
    "duration": pa.uint32(),
    "revenue": pa.float64(),
    "properties": pa.map_(_S, _S),
    "sdk_name": _S,
    "sdk_version": _S,
}
EVENT_COLUMNS = tuple(EVENT_TYPES)

PROFILE_TYPES: dict[str, pa.DataType] = {
    "profile_id": _S,
    "first_name": _S,
    "last_name": _S,
    "email": _S,
    "avatar": _S,
    "properties": pa.map_(_S, _S),
    "updated_at": _TIME,
}
PROFILE_COLUMNS = tuple(PROFILE_TYPES)

# identity links (identify and alias calls; README "Visitors and identity"), one row per link
LINK_TYPES: dict[str, pa.DataType] = {
    "source": _S,
    "target": _S,
    "kind": _S,
    "linked_at": _TIME,
}
# profile counters (increment/decrement), one row per person and property: the running total
COUNTER_TYPES: dict[str, pa.DataType] = {
    "profile_id": _S,
    "property": _S,
    "value": pa.float64(),
}
# export kind → (table, its columns)
KIND_TABLES: dict[str, tuple[str, dict[str, pa.DataType]]] = {
    "events": ("events", EVENT_TYPES),
    "profiles": ("profiles", PROFILE_TYPES),
    "links": ("identity_links", LINK_TYPES),
    "counters": ("profile_counters", COUNTER_TYPES),
}
TIME_COLUMNS = frozenset(
    k for k, t in {**EVENT_TYPES, **PROFILE_TYPES, **LINK_TYPES}.items() if t == _TIME
)


def schema(types: dict[str, pa.DataType]) -> pa.Schema:
    return pa.schema([("project_id", _S), *types.items()])


def map_array(values: Sequence[dict[str, str]], kind: pa.MapType) -> pa.Array:
    """Dicts → a map column from flat keys, values and offsets (no per-dict list of pairs)."""
    offsets = [0, *accumulate(map(len, values))]
    keys = pa.array(list(chain.from_iterable(values)), pa.string())
    items = pa.array(list(chain.from_iterable(v.values() for v in values)), pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, items, type=kind)
