"""Files → chunks: byte ranges that hold whole records, cut the same way every time; in a
Parquet file (our own export), its row groups.

The cut depends only on the file's bytes and CHUNK_BYTES, so a resumed or repeated import
sees the same chunks (same event ids, same insert deduplication tokens). A CSV record may
hold a newline inside a quoted cell: a cut is made only at a newline outside quotes
(an even number of `"` since the chunk began; RFC 4180 doubles quotes inside cells).
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    number: int  # across all files of the import, in order
    path: str
    file_hash: str
    start: int
    end: int
    header: bytes  # a CSV file's header line (without its newline); b"" for NDJSON
    group: int = -1  # a Parquet file's row group (start/end: its bytes, for progress only)


def file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while block := f.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _cut(data: mmap.mmap | bytes, start: int, target: int, csv: bool) -> int:
    """The end (exclusive) of the chunk that begins at `start`: just past a newline at or
    after `target`, outside quotes for CSV; the end of the data when there is none."""
    size = len(data)
    if target >= size:
        return size
    pos = target
    quotes = data[start:target].count(b'"') if csv else 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return size
        if csv:
            quotes += data[pos:nl].count(b'"')
            if quotes % 2:
                pos = nl + 1
                continue
        return nl + 1


PARQUET_MAGIC = b"PAR1"


def is_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == PARQUET_MAGIC


def _row_groups(path: Path, digest: str, first: int) -> list[Chunk]:
    """One chunk per non-empty row group: the export writes a row group per page, so they
    are already of a size to insert, and Arrow reads one without the rest of the file."""
    meta = pq.ParquetFile(path).metadata
    chunks, offset = [], 0
    for group in range(meta.num_row_groups):
        info = meta.row_group(group)
        size = max(1, sum(info.column(c).total_compressed_size for c in range(info.num_columns)))
        if info.num_rows:
            chunks.append(
                Chunk(first + len(chunks), str(path), digest, offset, offset + size, b"", group)
            )
        offset += size
    return chunks


def plan(paths: list[Path], csv: bool, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path in paths:
        digest = file_hash(path)
        if path.stat().st_size == 0:
            continue
        if is_parquet(path):
            chunks += _row_groups(path, digest, len(chunks))
            continue
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start, header = 0, b""
            if csv:
                start = _cut(data, 0, 0, True)
                header = bytes(data[:start]).rstrip(b"\r\n")
            while start < len(data):
                end = _cut(data, start, start + chunk_bytes, csv)
                chunks.append(Chunk(len(chunks), str(path), digest, start, end, header))
                start = end
    return chunks


def read(chunk: Chunk) -> bytes:
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        return f.read(chunk.end - chunk.start)
