"""`POST /api/send` (Umami), `POST /api/event` (Plausible) and `POST /v1/*` (the Segment
spec) as plain ASGI handlers beside `/track`.

Each parses its body into hits with its module in `gatrix.ingest.formats`, finds and admits
the project's client, and hands the hits to `/track`'s own `IngestApp.pending` and buffer
writer: one pipeline, one buffer, the same 2xx guarantee ("in Redis") and the same failures
(`IngestApp.failure`). What differs is the reply each tool's sender expects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from gatrix.buffer.rows import Pending
from gatrix.ingest.formats import Message, gunzip, plausible, segment, umami
from gatrix.ingest.payloads import InvalidPayload, decode_json
from gatrix.ingest.pipeline import Dropped, Request
from gatrix.ingest.routes import (
    ARRIVED,
    BATCH_BODY_FACTOR,
    RETRY_AFTER_S,
    AuthError,
    IngestApp,
    mark_arrival,
)
from gatrix.meta.projects import ClientInfo

_encode = msgspec.json.Encoder().encode
SEGMENT_PATHS = {f"/v1/{kind}": kind for kind in (*segment.KINDS, "batch")}
# path → the format's name, which also labels its latency metric and `sdk_name` on rows
WIRE_PATHS = {
    "/api/send": "umami",
    "/api/event": "plausible",
    **dict.fromkeys(SEGMENT_PATHS, "segment"),
}
WIRE_PATHS.update({f"{path}/": name for path, name in list(WIRE_PATHS.items())})
# Umami's server answers preflights with the `cors` package's defaults
UMAMI_METHODS = b"GET,HEAD,PUT,PATCH,POST,DELETE"
ALLOW_HEADERS = b"content-type, x-umami-cache, authorization"

Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, body, type, headers


def _json(status: int, body: dict[str, Any]) -> Reply:
    return status, _encode(body), b"application/json", []


class WireApp:
    def __init__(self, core: IngestApp, dedup_ttl_ms: int) -> None:
        self.core = core
        self.dedup_ttl_ms = dedup_ttl_ms
        self._handlers: dict[str, Callable[..., Awaitable[Reply]]] = {
            "umami": self._umami,
            "plausible": self._plausible,
            "segment": self._segment,
        }

    async def __call__(self, scope: dict, receive: Any, send: Any) -> int:
        mark_arrival(scope)
        path = scope["path"].rstrip("/")
        fmt = WIRE_PATHS[path]
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if scope["method"] == "OPTIONS":
            await self._reply(send, (204, b"", b"", []), origin, fmt, preflight=headers)
            return 204
        if scope["method"] != "POST":
            reply = _json(405, {"error": "method_not_allowed", "detail": "use POST"})
            reply[3].append((b"allow", b"POST, OPTIONS"))
            await self._reply(send, reply, origin, fmt)
            return 405
        batch = path == "/v1/batch"
        limit = self.core.config.max_body_bytes * (BATCH_BODY_FACTOR if batch else 1)
        body = await self.core.read_body(receive, headers, limit)
        if body is None:
            reply = _json(
                413, {"error": "body_too_large", "detail": f"request body exceeds {limit} bytes"}
            )
        else:
            try:
                if headers.get(b"content-encoding", b"").strip().lower() == b"gzip":
                    body = gunzip(body, limit)  # RudderStack's libraries gzip by default
                reply = await self._handlers[fmt](scope, headers, origin, path, body)
            except Exception as exc:
                status, error = self.core.failure(exc, headers)
                reply = _json(status, error)
        await self._reply(send, reply, origin, fmt)
        return reply[0]

    # --- who sends

    def _request(
        self, scope: dict, headers: dict, client: ClientInfo, server_side: bool, fmt: str
    ) -> Request:
        sender = self.core.address(scope, headers)
        req = self.core.make_request(sender, headers, client, server_side, True, scope[ARRIVED])
        req.sdk_name = fmt
        return req

    async def _admit(
        self, scope: dict, headers: dict, origin: str, client_id: str, secret: str = ""
    ) -> tuple[ClientInfo, bool]:
        sender = self.core.address(scope, headers)
        # none of these tools' own servers asks a secret of a sender without Origin
        return await self.core.admit(sender, client_id, secret, origin, keyless=True)

    async def _store(self, pairs: list[tuple[Message, Request]]) -> list[str]:
        """Run hits through the pipeline and buffer them; why those not stored were not."""
        items: list[Pending] = []
        projects: list[str] = []  # per item; empty for the identity links a hit adds
        dropped: list[str] = []
        for message, req in pairs:
            outcome = self.core.pending(message.hit, req)
            project = req.client.project_id
            if isinstance(outcome, Dropped):
                self.core.counters.count(project, outcome.reason)
                dropped.append(outcome.reason)
                continue
            own = outcome[0]
            if message.message_id and own.session:
                own.guard_key = self.core.ctx.keys.message(project, message.message_id)
                own.guard_ttl_ms = self.dedup_ttl_ms
            items += outcome
            projects += [project, *[""] * (len(outcome) - 1)]
        results = await self.core.writer.submit_many(items) if items else []
        for item, project, (_device, session) in zip(items, projects, results, strict=True):
            if not project:
                continue
            if item.session and not session:
                self.core.counters.count(project, "duplicate")
                dropped.append("duplicate")
                continue
            self.core.counters.count(project, "accepted")
        return dropped

    # --- the formats

    async def _umami(
        self, scope: dict, headers: dict, origin: str, path: str, body: bytes
    ) -> Reply:
        collect = umami.parse(decode_json(body))
        client = await self.core.directory.umami_client(collect.website)
        if client is None:
            raise InvalidPayload("unknown_website", f"no project has website {collect.website!r}")
        client, server_side = await self._admit(scope, headers, origin, client.client_id)
        if collect.message is None:
            self.core.counters.count(client.project_id, collect.dropped)
            return _json(202, {"dropped": collect.dropped})
        req = self._request(scope, headers, client, server_side, "umami")
        outcome = self.core.pending(collect.message.hit, req)
        if isinstance(outcome, Dropped):
            self.core.counters.count(client.project_id, outcome.reason)
            return _json(202, {"dropped": outcome.reason})
        _device, session = (await self.core.writer.submit_many(outcome))[0]
        hit_type = collect.message.hit.type
        self.core.counters.count(client.project_id, "accepted" if hit_type == "track" else hit_type)
        # the 2.x tracker keeps the reply's text and echoes it in x-umami-cache; the
        # current one reads `cache` and `disabled` from the JSON. We need neither back.
        return _json(200, {"cache": session, "sessionId": session, "visitId": session})

    async def _plausible(
        self, scope: dict, headers: dict, origin: str, path: str, body: bytes
    ) -> Reply:
        event = plausible.parse(decode_json(body))
        pairs: list[tuple[Message, Request]] = []
        refused: AuthError | None = None
        known = False
        for domain in event.domains:
            for client_id in await self.core.directory.site_clients(domain):
                known = True
                try:
                    client, server_side = await self._admit(scope, headers, origin, client_id)
                except AuthError as exc:
                    refused = exc
                    continue
                if all(req.client.project_id != client.project_id for _, req in pairs):
                    pairs.append(
                        (
                            event.message,
                            self._request(scope, headers, client, server_side, "plausible"),
                        )
                    )
                break  # one project per domain: the most specific, oldest that admits us
        if not pairs:
            if refused is not None:
                raise refused
            if not known:
                raise InvalidPayload(
                    "unknown_domain",
                    f"no project lists {', '.join(event.domains)} in its allowed origins",
                )
        dropped = await self._store(pairs)
        extra = [(b"x-gatrix-dropped", ",".join(dropped).encode())] if dropped else []
        return 202, b"ok", b"text/plain; charset=utf-8", extra

    async def _segment(
        self, scope: dict, headers: dict, origin: str, path: str, body: bytes
    ) -> Reply:
        doc = decode_json(body)
        key, secret = segment.credentials(headers.get(b"authorization", b"").decode("latin-1"))
        if not key and isinstance(doc, dict) and isinstance(doc.get("writeKey"), str):
            key = doc["writeKey"].strip()
        if not key:
            raise AuthError(
                401,
                "missing_write_key",
                "send a client id as the write key (HTTP Basic user), with its secret as the "
                "password to have context.ip and context.userAgent honoured",
            )
        client, server_side = await self._admit(scope, headers, origin, key, secret)
        if SEGMENT_PATHS[path] == "alias" and not server_side:
            # as on /track: a write key alone (public in every page) cannot merge two people
            raise AuthError(
                403, "alias_needs_secret", "alias merges two people: send the secret as well"
            )
        req = self._request(scope, headers, client, server_side, "segment")
        req.browser = bool(origin)
        parsed = segment.parse(SEGMENT_PATHS[path], doc, req.received_ms, server_side)
        for reason in parsed.ignored:
            self.core.counters.count(client.project_id, reason)
        await self._store([(message, req) for message in parsed.messages])
        return _json(200, {"success": True})

    # --- replies

    async def _reply(
        self,
        send: Any,
        reply: Reply,
        origin: str,
        fmt: str,
        preflight: dict | None = None,
    ) -> None:
        status, payload, content_type, extra = reply
        out = [
            (b"access-control-allow-origin", origin.encode("latin-1") if origin else b"*"),
            (b"vary", b"Origin"),
            (b"content-length", str(len(payload)).encode()),
            *extra,
        ]
        if content_type:
            out.append((b"content-type", content_type))
        if status == 503:
            out.append((b"retry-after", RETRY_AFTER_S))
        if preflight is not None:
            requested = preflight.get(b"access-control-request-headers")
            methods = UMAMI_METHODS if fmt == "umami" else b"POST, OPTIONS"
            out += [
                (b"access-control-allow-methods", methods),
                (b"access-control-allow-headers", requested or ALLOW_HEADERS),
                (b"access-control-max-age", b"86400"),
            ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})
