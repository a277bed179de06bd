"""Where an import stands: the chunks already in ClickHouse, kept in a small JSON file under
the data directory, named after the import (project, format and the files' content hashes).

Written after each block's insert returns, atomically (a temporary file renamed over it). A
crash between an insert and this write leaves one block's chunks unmarked; its retry is cut
the same way and carries the same insert deduplication token, so ClickHouse stores it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data.pop("path")
        data["done"] = sorted(self.done)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


def import_id(project_id: str, fmt: str, file_hashes: list[str]) -> str:
    text = "\n".join([project_id, fmt, *file_hashes])
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
