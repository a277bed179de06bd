"""What the load generators send, and where: shared by the `/track` and `/track/batch` phases."""

from __future__ import annotations

import json
from typing import Any

HOST = "127.0.0.1"
ORIGIN = "https://bench.example"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
# Distinct paths per request keep the pipeline honest (URL parsing, UTM extraction) without
# making the generator build requests on the fly: wrk cycles through pre-formatted requests.
PATH_VARIANTS = 64
BATCH_SIZE = 1000  # the server's MAX_BATCH


def envelope(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "payload": {
            "name": "screen_view",
            "properties": {
                "__path": f"{ORIGIN}/pricing/{n}?utm_source=bench",
                "__referrer": "https://www.google.com/",
                "__title": "Pricing",
            },
        },
    }


def track_bodies() -> list[bytes]:
    return [json.dumps(envelope(n), separators=(",", ":")).encode() for n in range(PATH_VARIANTS)]


def batch_body(size: int, seed: int) -> bytes:
    items = [envelope(seed * BATCH_SIZE + i) for i in range(size)]
    return json.dumps(items, separators=(",", ":")).encode()


def headers(client_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Origin": ORIGIN,
        "openpanel-client-id": client_id,
        "User-Agent": USER_AGENT,
    }
