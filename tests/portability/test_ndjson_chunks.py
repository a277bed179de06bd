"""One chunk of our own NDJSON export → columns, without ClickHouse: what each cell becomes,
which lines are dropped, and the ids the chunk's rows get."""

from __future__ import annotations

import gc
import json
from typing import Any

from gatrix.portability.formats.gatrix import GatrixFormat, paused_gc
from gatrix.portability.work import event_id, event_ids

PREFIX = "0123abcd-ef01-2345-6789-"


def test_event_ids_as_a_column_match_one_by_one() -> None:
    indexes = [0, 1, 15, 16, 255, 4095, 123_456, 2**48 - 1]
    column = event_ids(PREFIX, indexes)
    column.validate(full=True)
    assert column.to_pylist() == [event_id(PREFIX, i) for i in indexes]
    assert event_ids(PREFIX, []).to_pylist() == []


def test_the_collector_is_paused_only_while_a_chunk_is_parsed() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def _line(**values: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": "3f04748d-dd8c-41b5-86ae-870c2d58af9d",
        "name": "screen_view",
        "device_id": "d1",
        "session_id": "S1",
        "session_start": "2026-08-31 02:31:21.000",
        "created_at": "2026-08-31 02:31:21.250",
        "received_at": "2026-08-31 02:31:22.000",
        "origin": "https://shop.test",
        "path": "/p0",
        "duration": 3,
        "revenue": 9.5,
        "properties": {},
        "sdk_name": "web",
    }
    line.update(values)
    return line


def _chunk(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def _rows(data: bytes) -> tuple[list[dict[str, Any]], list[int], dict[str, int], int]:
    table = GatrixFormat().table(data, b"")
    names = list(table.columns)
    values = [table.columns[n].to_pylist() for n in names]
    rows = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    return rows, table.kept, table.dropped, table.records


def test_cells_keep_their_text_numbers_and_times() -> None:
    properties = {"plan": "pro", "n": "42", "ratio": "0.50", "empty": "", "city": "서울 ✓"}
    second = _line(utm_source="news")
    rows, kept, dropped, records = _rows(_chunk([_line(properties=properties), second]))
    assert (kept, dropped, records) == ([0, 1], {}, 2)
    first = rows[0]
    assert list(first["properties"]) == list(properties.items())  # order kept
    assert first["created_at"].isoformat() == "2026-08-31T02:31:21.250000"
    assert (first["duration"], first["revenue"], first["path"]) == (3, 9.5, "/p0")
    assert [r["profile_id"] for r in rows] == ["", ""]  # absent in every line: empty
    assert [r["utm_source"] for r in rows] == ["", "news"]
    assert rows[1]["properties"] == []


def test_a_bad_line_is_dropped_and_the_rest_kept() -> None:
    lines: list[Any] = [
        _line(),
        b'{"name": "cut short", "created_at": "2026-08',
        _line(properties={"n": 42}),  # a number where text belongs
        _line(name="kept"),
        b"   ",  # blank: not a record
    ]
    rows, kept, dropped, records = _rows(_chunk(lines))
    assert (kept, dropped, records) == ([0, 3], {"invalid": 2}, 4)
    assert [r["name"] for r in rows] == ["screen_view", "kept"]


def test_blank_lines_are_no_records_and_keep_the_numbering() -> None:
    data = b"\n" + _chunk([_line(name="a")]) + b"  \r\n\n" + _chunk([_line(name="b")]) + b"\n"
    rows, kept, dropped, records = _rows(data)
    assert (kept, dropped, records) == ([0, 1], {}, 2)
    assert [r["name"] for r in rows] == ["a", "b"]


def test_a_line_is_one_record_or_dropped() -> None:
    two = json.dumps(_line(name="x")) + " " + json.dumps(_line(name="y"))
    # valid JSON once the lines are joined, but not line by line
    spread = json.dumps(_line(name="z", extra=[1, 2])).replace("1, ", "1\n")
    for bad in (two, spread):
        data = _chunk([_line(name="a")]) + bad.encode() + b"\n" + _chunk([_line(name="b")])
        rows, kept, dropped, records = _rows(data)
        lines = 2 + bad.count("\n") + 1
        assert (kept, records) == ([0, lines - 1], lines)
        assert dropped == {"invalid": lines - 2}
        assert [r["name"] for r in rows] == ["a", "b"]


def test_crlf_lines_and_a_last_line_without_newline() -> None:
    data = _chunk([_line(name="a")]).replace(b"\n", b"\r\n") + json.dumps(_line(name="b")).encode()
    rows, kept, dropped, records = _rows(data)
    assert (kept, dropped, records) == ([0, 1], {}, 2)
    assert [r["name"] for r in rows] == ["a", "b"]
