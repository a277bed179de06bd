"""Import formats. Each turns the records of one chunk into what the importer writes:

- `key(record)`: (visitor id, epoch ms) for the session pass, or None when the record will
  be dropped or is no event (formats whose sessions the import decides), of a record from
  `key_records`: the session pass may decode only the fields it needs, in the same order;
- `convert(record)`: an `Imported` event to enrich, a `ProfileRow`, or the name of the
  reason it is dropped. (Our own export is enriched already: `GatrixFormat.table`.)
"""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from gatrix.portability.enrich import Imported


@dataclass(slots=True)
class ProfileRow:
    values: dict[str, Any]
    # the device the person identified on (a Segment identify with both ids): linked to them
    device: str = ""


Converted = Imported | ProfileRow | str


class Format(Protocol):
    name: str
    csv: bool
    # True: the import decides sessions (30-minute gaps per visitor); False: rows carry theirs
    sessions: bool

    def records(self, data: bytes, header: bytes) -> Iterator[Any]: ...

    def key_records(self, data: bytes, header: bytes) -> Iterator[Any]: ...

    def key(self, record: Any) -> tuple[str, int] | None: ...

    def convert(self, record: Any) -> Converted: ...


# The csv module refuses a cell over 128 KB with an error, which would stop the whole import
# at one oversized cell (a long title or URL): cells are cut to their column's size later, so
# any cell a chunk can hold is read.
csv.field_size_limit(2**31 - 1)


def csv_records(data: bytes, header: bytes) -> Iterator[dict[str, str]]:
    names = _header_names(header)
    for values in csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")):
        if values:
            yield dict(zip(names, values, strict=False))


def csv_columns(data: bytes, header: bytes, wanted: tuple[str, ...]) -> Iterator[list[str]]:
    """The `wanted` cells of each record exactly as `csv_records` gives them, without a dict:
    of a repeated column name the last one the row reaches; "" for a column the header or
    a short row lacks."""
    names = _header_names(header)
    # each wanted name's columns, last first
    at = [[i for i in range(len(names) - 1, -1, -1) if names[i] == name] for name in wanted]
    for values in csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")):
        if values:
            size = len(values)
            yield [next((values[i] for i in where if i < size), "") for where in at]


def _header_names(header: bytes) -> list[str]:
    return next(csv.reader([header.decode("utf-8-sig", "replace")]), [])


_decoder = msgspec.json.Decoder()


def ndjson_records(data: bytes, _header: bytes = b"") -> Iterator[Any]:
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            yield _decoder.decode(line)
        # msgspec stops at the interpreter's recursion limit (~1,000 levels) with a
        # RecursionError
        except (msgspec.DecodeError, RecursionError):
            yield None  # counted as invalid, keeps the record numbering


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off while a chunk is parsed. A chunk becomes hundreds of thousands
    of small objects (structs, dicts, strings, tuples) that reference counting frees; each
    allocation burst still sets off collector passes over all of them, which cost about a
    third of a chunk's time. A cycle made meanwhile is collected once the collector is back."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


FORMATS = ("gatrix", "umami", "segment")


def get_format(name: str, csv_file: bool = False) -> Format:
    """`csv_file`: our own export comes as CSV or NDJSON (the importer looks at its first
    byte); the other formats have one encoding each."""
    from gatrix.portability.formats import gatrix, segment, umami

    formats: dict[str, Format] = {
        "gatrix": gatrix.GatrixFormat(csv_file),
        "umami": umami.UmamiFormat(),
        "segment": segment.SegmentFormat(),
    }
    if name not in formats:
        raise ValueError(f"unknown import format {name!r}; use one of {', '.join(formats)}")
    return formats[name]
