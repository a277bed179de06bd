"""Our own export, NDJSON, CSV or Parquet (`GET /insights/…/export`, `gatrix export`), back in.

The rows are enriched already and carry their sessions (decided by the live path, or by an
earlier import), so they are written as they are: only the id (new, deterministic) and the
project change. A profiles export (`kind=profiles`) goes back into `profiles`. Nothing is
enriched, so a chunk is handled column by column: msgspec decodes NDJSON lines into typed
structs, Arrow casts CSV text to numbers and times, and a Parquet row group is columns
already, cast to the table's types (no row is looked at in Python).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gatrix.portability.columns import (
    COUNTER_TYPES,
    EVENT_TYPES,
    LINK_TYPES,
    PROFILE_TYPES,
    map_array,
)
from gatrix.portability.formats import Converted, csv_records, ndjson_records, paused_gc

_props = msgspec.json.Decoder(dict[str, str])


class EventLine(msgspec.Struct):
    created_at: str
    session_start: str
    received_at: str = ""
    name: str = ""
    device_id: str = ""
    profile_id: str = ""
    session_id: str = ""
    origin: str = ""
    path: str = ""
    query: str = ""
    title: str = ""
    referrer: str = ""
    referrer_name: str = ""
    referrer_type: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    click_id_type: str = ""
    click_id: str = ""
    country: str = ""
    region: str = ""
    city: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    brand: str = ""
    model: str = ""
    screen: str = ""
    language: str = ""
    duration: int = 0
    revenue: float = 0.0
    properties: dict[str, str] = {}
    sdk_name: str = ""
    sdk_version: str = ""


class ProfileLine(msgspec.Struct):
    profile_id: str
    updated_at: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    avatar: str = ""
    properties: dict[str, str] = {}


class LinkLine(msgspec.Struct):
    source: str
    target: str
    kind: str
    linked_at: str


class CounterLine(msgspec.Struct):
    profile_id: str
    property: str
    value: float


@dataclass(frozen=True)
class Shape:
    """What one kind of export file holds: its table, its columns, its NDJSON line, and the
    column that tells it apart (in a CSV header, an NDJSON line, a Parquet schema)."""

    table: str
    types: dict[str, pa.DataType]
    line: type[msgspec.Struct]
    mark: str

    # made once per shape, not per chunk (cached_property writes past the frozen __setattr__)
    @functools.cached_property
    def one(self) -> msgspec.json.Decoder:
        return msgspec.json.Decoder(self.line)

    @functools.cached_property
    def many(self) -> msgspec.json.Decoder:
        return msgspec.json.Decoder(list[self.line])  # type: ignore[name-defined]


# told apart in this order; a file with none of the marks is read as profiles
SHAPES = (
    Shape("events", EVENT_TYPES, EventLine, "created_at"),
    Shape("identity_links", LINK_TYPES, LinkLine, "linked_at"),
    Shape("profile_counters", COUNTER_TYPES, CounterLine, "property"),
    Shape("profiles", PROFILE_TYPES, ProfileLine, "profile_id"),
)


def shape_of(names: set[str] | bytes) -> Shape:
    """The kind of a file from its column names (a CSV header's, a Parquet schema's) or from
    the text of an NDJSON line (a quoted key)."""
    for shape in SHAPES:
        if shape.mark in names if isinstance(names, set) else f'"{shape.mark}"'.encode() in names:
            return shape
    return SHAPES[-1]


class Table(msgspec.Struct):
    """One chunk as columns: which table, the columns (no id or project yet), and per
    record its index, or the reason it was dropped."""

    table: str
    columns: dict[str, list[Any]]
    kept: list[int]
    dropped: dict[str, int]
    records: int


class GatrixFormat:
    name = "gatrix"
    sessions = False

    def __init__(self, csv: bool = False) -> None:
        self.csv = csv

    def records(self, data: bytes, header: bytes) -> Iterator[Any]:
        return csv_records(data, header) if self.csv else ndjson_records(data)

    key_records = records

    def key(self, record: Any) -> tuple[str, int] | None:
        return None

    def convert(self, record: Any) -> Converted:
        return "invalid"  # chunks of this format go through `table`

    def table(self, data: bytes, header: bytes) -> Table:
        with paused_gc():
            if self.csv:
                names = {
                    n.strip().strip('"') for n in header.decode("utf-8-sig", "replace").split(",")
                }
                return _csv_table(data, header, shape_of(names))
            return _ndjson_table(data)


def _ndjson_table(data: bytes) -> Table:
    lines = [line for line in data.split(b"\n") if line.strip()]
    shape = shape_of(lines[0]) if lines else SHAPES[0]
    decoded, kept = _decode(lines, shape)
    dropped = len(lines) - len(kept)
    # struct → tuple → columns, all in C: a third of the cost of a getattr per cell; the
    # columns stay tuples, which Arrow reads as well as lists
    fields = shape.line.__struct_fields__
    transposed = zip(*map(msgspec.structs.astuple, decoded), strict=True) if decoded else ()
    by_field = dict(zip(fields, transposed, strict=False))
    columns = {n: by_field.get(n, ()) for n in shape.types if n != "id"}
    return Table(
        shape.table,
        _typed(columns, shape.types),
        kept,
        {"invalid": dropped} if dropped else {},
        len(lines),
    )


def _decode(lines: list[bytes], shape: Shape) -> tuple[list[Any], list[int]]:
    """Every line decoded, and the indexes of those kept. The whole chunk is decoded as one
    array first (one call); only a chunk with a bad line is decoded line by line."""
    try:
        whole = shape.many.decode(b"[" + b",".join(lines) + b"]")
        # one record over several lines can still join into a valid array
        if len(whole) == len(lines):
            return whole, list(range(len(lines)))
    except msgspec.DecodeError:
        pass
    one = shape.one
    decoded: list[Any] = []
    kept: list[int] = []
    for index, line in enumerate(lines):
        try:
            decoded.append(one.decode(line))
            kept.append(index)
        except msgspec.DecodeError:
            continue
    return decoded, kept


def _csv_table(data: bytes, header: bytes, shape: Shape) -> Table:
    rows = list(csv_records(data, header))
    columns: dict[str, list[Any]] = {}
    for name in shape.types:
        if name == "id":
            continue
        values = [r.get(name, "") for r in rows]
        if name == "properties":
            columns[name] = [_props.decode(v) if v else {} for v in values]
        else:
            columns[name] = values
    return Table(shape.table, _typed(columns, shape.types), list(range(len(rows))), {}, len(rows))


def _typed(columns: dict[str, Sequence[Any]], types: dict[str, pa.DataType]) -> dict[str, Any]:
    """Text columns cast by Arrow to their numbers and times (vectorised, not per cell)."""
    out: dict[str, Any] = {}
    for name, values in columns.items():
        kind = types[name]
        if isinstance(kind, pa.MapType):
            out[name] = map_array(values, kind)
        elif kind == pa.string():
            out[name] = _text(values)
        elif isinstance(kind, pa.TimestampType):
            out[name] = pa.array([v or "1970-01-01 00:00:00" for v in values]).cast(kind)
        elif values and not isinstance(values[0], str):
            out[name] = pa.array(values, kind)  # decoded from JSON: numbers already
        else:
            out[name] = pa.array([str(v) if v != "" else "0" for v in values]).cast(kind)
    return out


def _text(values: Sequence[str]) -> pa.Array:
    """A text column. One empty in every row of the chunk (UTM tags, click ids, brand and
    model are for most events) is made without converting its cells: telling that costs a
    fifth of converting them."""
    if not any(values):
        return pa.repeat(_EMPTY, len(values))
    return pa.array(values, pa.string())


_EMPTY = pa.scalar("", pa.string())


# the columns without which a row is nothing: as the NDJSON structs require
_REQUIRED = {
    shape.table: tuple(
        name
        for name, field in zip(
            shape.line.__struct_fields__, msgspec.structs.fields(shape.line), strict=True
        )
        if field.required
    )
    for shape in SHAPES
}


def parquet_table(path: str, group: int) -> Table:
    """One row group of a Parquet export. A row missing a required column's value is
    dropped as invalid; so is the whole group when its columns cannot take the table's
    types (text that is not UTF-8, a number column holding text)."""
    data = pq.ParquetFile(path).read_row_group(group)
    shape = shape_of(set(data.column_names))
    table, types = shape.table, shape.types
    records = data.num_rows
    required = _REQUIRED[table]
    if any(name not in data.column_names for name in required):
        return Table(table, {}, [], {"invalid": records}, records)
    valid = functools.reduce(pc.and_kleene, (pc.is_valid(data[name]) for name in required))
    kept = pc.indices_nonzero(valid).to_pylist()
    if len(kept) < records:
        data = data.filter(valid)
    try:
        columns = {name: _column(data, name, kind) for name, kind in types.items() if name != "id"}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return Table(table, {}, [], {"invalid": records}, records)
    dropped = records - len(kept)
    return Table(table, columns, kept, {"invalid": dropped} if dropped else {}, records)


def _column(data: pa.Table, name: str, kind: pa.DataType) -> pa.Array:
    """A column as the table's type (times to naive UTC milliseconds, binary to text); one
    the file lacks is all nulls, which ClickHouse stores as the column's default."""
    if name not in data.column_names:
        return pa.nulls(data.num_rows, kind)
    return data[name].combine_chunks().cast(kind)
