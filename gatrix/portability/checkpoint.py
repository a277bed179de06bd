"""Where an import stands: the chunks already in ClickHouse, kept in small JSON files under
the data directory.

- The checkpoint of one import, named after it (project, format and the files' content
  hashes, in the order given): which of its chunks are in, and its counts.
- The project's ledger: every chunk any import stored into the project, named by its file's
  content and its place in the file. An import skips the chunks it names, so a file imported
  before is not stored again when it comes back in another list of files, alone or with
  others.

Both are written after each block's insert returns, atomically (a temporary file renamed over
it), the ledger first: a resume counts a chunk either names as done. A crash between an
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
    def open(cls, folder: Path, project_id: str) -> Ledger:
        name = hashlib.blake2b(project_id.encode(), digest_size=12).hexdigest()
        path = folder / f"project-{name}.json"
        return cls(path, _read_pieces(path))

    def add(self, pieces: Iterable[str]) -> None:
        """Record `pieces`, keeping what other imports into the project recorded meanwhile."""
        with _locked(self.path.with_suffix(".lock")):
            self.pieces = _read_pieces(self.path) | self.pieces | set(pieces)
            _write(self.path, {"pieces": sorted(self.pieces)})


def _read_pieces(path: Path) -> set[str]:
    return set(json.loads(path.read_text())["pieces"]) if path.exists() else set()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def import_id(project_id: str, fmt: str, file_hashes: list[str]) -> str:
    text = "\n".join([project_id, fmt, *file_hashes])
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
