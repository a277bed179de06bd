"""Where an import stands: the chunks already in ClickHouse, kept in small JSON files under
the data directory.

- The checkpoint of one import, named after it (project, format and the files' content
  hashes, in the order given): which of its chunks are in, and its counts.
- The project's ledger: every chunk any import stored into the project, named by its file's
  content and its place in the file. An import skips the chunks it names, so a file imported
  before is not stored again when it comes back in another list of files, alone or with
  others.

An import holds its project's ledger from start to end (a file lock), so two imports into one
project never both store a file neither found in it; the second waits. Both files are
written after each block's insert returns, atomically (a temporary file renamed over it),
the ledger first: a resume counts a chunk either names as done. A crash between an
insert and these writes leaves one block's chunks unmarked; the same import's retry cuts it
the same way and carries the same insert deduplication token, so ClickHouse stores it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from gatrix.portability.chunks import Chunk


@dataclass
class Checkpoint:
    path: Path
    import_id: str
    done: set[int] = field(default_factory=set)
    events: int = 0
    profiles: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    others: dict[str, int] = field(default_factory=dict)  # identity links, counters

    @classmethod
    def open(cls, folder: Path, import_id: str) -> Checkpoint:
        path = folder / f"{import_id}.json"
        if not path.exists():
            return cls(path, import_id)
        data = json.loads(path.read_text())
        return cls(
            path,
            import_id,
            set(data["done"]),
            data["events"],
            data["profiles"],
            data["dropped"],
            data["complete"],
            data.get("others", {}),
        )

    def save(self) -> None:
        data = asdict(self)
        data.pop("path")
        data["done"] = sorted(self.done)
        _write(self.path, data)


def piece(fmt: str, chunk: Chunk) -> str:
    """A chunk as the ledger names it: independent of the other files of its import."""
    return f"{fmt}:{chunk.file_hash}:{chunk.start}:{chunk.end}:{chunk.group}"


@dataclass
class Ledger:
    """The chunks (`piece`) any import stored into one project."""

    path: Path
    pieces: set[str] = field(default_factory=set)

    @classmethod
    @contextmanager
    def held(cls, folder: Path, project_id: str, out: TextIO) -> Iterator[Ledger]:
        """The project's ledger, held for one import: another import into the project (any
        process) waits until this one is over, then reads what it stored."""
        name = hashlib.blake2b(project_id.encode(), digest_size=12).hexdigest()
        path = folder / f"project-{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                out.write("another import into this project is running: waiting for it\n")
                out.flush()
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield cls(path, _read_pieces(path))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, pieces: Iterable[str]) -> None:
        self.pieces |= set(pieces)
        _write(self.path, {"pieces": sorted(self.pieces)})


def _read_pieces(path: Path) -> set[str]:
    return set(json.loads(path.read_text())["pieces"]) if path.exists() else set()


def _write(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def import_id(project_id: str, fmt: str, file_hashes: list[str]) -> str:
    text = "\n".join([project_id, fmt, *file_hashes])
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
