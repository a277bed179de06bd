"""The server's listening socket, shareable by all of its processes.

Every process of `gatrix serve --workers N` binds its own socket to the same address with
SO_REUSEPORT, and the kernel spreads new connections over them by a hash of the peer's address.
A socket shared by inheritance would instead wake every process for each connection, and the
first to wake takes a whole burst (a benchmark's 64 keep-alive connections landed on one
process). Linux lets only processes of the same user join the group.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

BACKLOG = 2048


def listening_socket(host: str, port: int, first: bool = False) -> socket.socket:
    """A socket in the port's SO_REUSEPORT group. `first` (the primary) makes sure the port is
    free before: the group would otherwise let a second server started by mistake (same user,
    same port) silently take half of the first one's connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if first:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # EADDRINUSE while anything listens there
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def private_socket(path: str) -> socket.socket:
    """The primary's Unix socket for requests its ingest processes forward (owner-only)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def server_config(app: Any) -> uvicorn.Config:
    """How every process of `gatrix serve` serves HTTP (the benchmarks' bare app too, so the
    two are compared on the same server software and options)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=15,
        backlog=BACKLOG,
        proxy_headers=False,  # client IPs come from GATRIX_TRUSTED_PROXIES rules only
    )
