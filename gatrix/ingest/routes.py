"""`POST /track` and `POST /track/batch` as plain ASGI handlers.

These are the hottest paths of the product, so they skip the framework's request/response
machinery (measured: a minimal framework handler reaches a quarter of a bare ASGI app here):
read the body, parse it with msgspec, authenticate from a cache, run the pipeline, and hand the
item to the group-commit writer. Replies are always JSON (the OpenPanel SDK retries on a
non-JSON body) and always carry CORS headers.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

from gatrix.buffer.rows import Pending
from gatrix.buffer.writer import BufferFull, BufferWriter
from gatrix.ingest.counters import IngestCounters
from gatrix.ingest.payloads import Hit, InvalidPayload, decode_json, parse_envelope
from gatrix.ingest.pipeline import (
    Context,
    Dropped,
    Request,
    process_profile,
    process_track,
    sender_device,
)
from gatrix.logs import request_id
from gatrix.meta.projects import ClientInfo, Directory, SecretsThrottled, origin_allowed

log = logging.getLogger("gatrix.ingest")
_encode = msgspec.json.Encoder().encode
MAX_BATCH = 1000
# the paths this module serves, after GATRIX_ROOT_PATH is taken off
INGEST_PATHS = frozenset({"/track", "/track/", "/track/batch", "/track/batch/"})
# how long a client should wait before retrying a 503 (the flush runs every second)
RETRY_AFTER_S = b"5"
BUFFER_FULL_DETAIL = (
    "the event buffer is over its high-water mark while ClickHouse catches up; retry later"
)
BATCH_BODY_FACTOR = 16
ALLOW_HEADERS = (
    b"content-type, openpanel-client-id, openpanel-client-secret, openpanel-sdk-name, "
    b"openpanel-sdk-version"
)
_WANTED = {
    b"origin",
    b"user-agent",
    b"content-length",
    b"openpanel-client-id",
    b"openpanel-client-secret",
    b"openpanel-sdk-name",
    b"openpanel-sdk-version",
    b"x-forwarded-for",
    b"x-real-ip",
    b"access-control-request-headers",
    b"x-request-id",
}

# when a request came in: its events are stamped with it (a sender's requests sent in order
# keep their order even when one of them waits longer for its client or its body)
ARRIVED = "gatrix.arrived_ms"


def mark_arrival(scope: dict) -> None:
    """Stamp the request at the entry of the app that handles it; `scope[ARRIVED]` reads it."""
    scope[ARRIVED] = int(time.time() * 1000)


def internal_error(headers: dict) -> dict[str, str]:
    """Log the exception being handled with a request id and say which one to the client.
    Only failures pay for the id: the hot path sets none (see `gatrix.app.FrontDoor`)."""
    incoming = headers.get(b"x-request-id", b"")[:64].decode("latin-1")
    rid = incoming or uuid.uuid4().hex[:16]
    token = request_id.set(rid)
    try:
        log.exception("unexpected error while ingesting")
    finally:
        request_id.reset(token)
    return {
        "error": "internal_error",
        "detail": f"the server failed on this event; report request id {rid}",
        "request_id": rid,
    }


def _may_send(hit: Hit, req: Request) -> None:
    # Merging two people rewrites history for everyone who reads the reports: only the
    # project's backend (which proved it knows the secret) may do it, never a web page nor
    # anyone who only knows the public client id.
    if hit.type == "alias" and not req.server_side:
        raise AuthError(
            403,
            "alias_needs_secret",
            "alias merges two people: send it from a backend with the secret",
        )


class AuthError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass
class IngestConfig:
    max_body_bytes: int
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    default_client_id: str | None


class TrustedProxies:
    def __init__(self, cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> None:
        self.cidrs = cidrs
        self.trusted = lru_cache(maxsize=4096)(self._trusted)

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.cidrs)

    def client_ip(self, peer: str, forwarded_for: str, real_ip: str) -> str:
        """Walk X-Forwarded-For from the right while hops are our proxies: spoof-proof."""
        if not self.cidrs or not self.trusted(peer):
            return peer
        if forwarded_for:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            for hop in reversed(hops):
                if not self.trusted(hop):
                    return hop
            return hops[0] if hops else peer
        return real_ip.strip() or peer


class IngestApp:
    def __init__(
        self,
        config: IngestConfig,
        directory: Directory,
        writer: BufferWriter,
        ctx: Context,
        counters: IngestCounters,
    ) -> None:
        self.config = config
        self.directory = directory
        self.writer = writer
        self.ctx = ctx
        self.counters = counters
        self.proxies = TrustedProxies(config.trusted_proxies)
        self._last_warning = float("-inf")
        self._suppressed = 0

    # --- ASGI entry

    async def __call__(self, scope: dict, receive: Any, send: Any) -> int:
        """Handle one request; returns the status sent (for the latency metrics)."""
        mark_arrival(scope)
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        origin = headers.get(b"origin", b"").decode("latin-1")
        method = scope["method"]
        if method == "OPTIONS":
            await self._reply(send, 204, None, origin, preflight=headers)
            return 204
        if method != "POST":
            await self._reply(
                send,
                405,
                {"error": "method_not_allowed", "detail": "use POST"},
                origin,
                extra=[(b"allow", b"POST, OPTIONS")],
            )
            return 405
        batch = scope["path"].rstrip("/").endswith("/batch")
        limit = self.config.max_body_bytes * (BATCH_BODY_FACTOR if batch else 1)
        body = await self.read_body(receive, headers, limit)
        if body is None:
            await self._reply(
                send,
                413,
                {"error": "body_too_large", "detail": f"request body exceeds {limit} bytes"},
                origin,
            )
            return 413
        try:
            if batch:
                status, reply = await self._batch(scope, headers, origin, body)
            else:
                status, reply = await self._single(scope, headers, origin, body)
        except Exception as exc:
            status, reply = self.failure(exc, headers)
        await self._reply(send, status, reply, origin)
        return status

    def failure(self, exc: Exception, headers: dict) -> tuple[int, dict]:
        """The JSON reply to a request that raised: bad input, auth, a full or absent buffer,
        or a bug. Shared by every ingestion wire format."""
        if isinstance(exc, InvalidPayload):
            return self._rejected(exc)
        if isinstance(exc, AuthError):
            return exc.status, {"error": exc.code, "detail": exc.detail}
        if isinstance(exc, BufferFull):
            self.counters.count("", "buffer_full")
            self._warn("buffer full, refusing events: %s", exc)
            return 503, {"error": "buffer_full", "detail": BUFFER_FULL_DETAIL}
        if isinstance(exc, ConnectionError | OSError | TimeoutError):
            self.counters.count("", "buffer_unavailable")
            self._warn("buffer unavailable: %s", exc)
            return 503, {
                "error": "buffer_unavailable",
                "detail": "the event buffer (Redis) is unavailable; retry later",
            }
        # a bug, not bad input: still a JSON reply with CORS headers, or the SDK would see an
        # opaque network error; the traceback goes to the log under a request id
        return 500, internal_error(headers)

    def _warn(self, message: str, exc: BaseException) -> None:
        """One warning per second at most: a Redis outage under load must not flood the log."""
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            suppressed = (
                f" ({self._suppressed} more since the last line)" if self._suppressed else ""
            )
            log.warning(message + suppressed, exc)
            self._last_warning, self._suppressed = now, 0
        else:
            self._suppressed += 1

    async def read_body(self, receive: Any, headers: dict, limit: int) -> bytes | None:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body"):
            body = message.get("body", b"")  # the usual case: the whole body in one message
            return body if len(body) <= limit else None
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
            message = await receive()
        return b"".join(chunks)

    # --- one event

    async def _single(
        self, scope: dict, headers: dict, origin: str, body: bytes
    ) -> tuple[int, dict]:
        hit, body_client, body_secret = parse_envelope(decode_json(body))
        sender = self.address(scope, headers)
        client, server_side = await self.authenticate(
            sender, headers, origin, body_client, body_secret
        )
        req = self.make_request(sender, headers, client, server_side, bool(origin), scope[ARRIVED])
        _may_send(hit, req)
        items = self.pending(hit, req)
        if isinstance(items, Dropped):
            self.counters.count(client.project_id, items.reason)
            return 202, {"dropped": items.reason}
        # one item is the common case: submit's inlined path (this runs once per /track)
        ids = (
            [await self.writer.submit(items[0])]
            if len(items) == 1
            else (await self.writer.submit_many(items))
        )
        self.counters.count(client.project_id, "accepted" if hit.type == "track" else hit.type)
        if hit.type == "track":
            device_id, session_id = ids[0]
            return 200, {"deviceId": device_id, "sessionId": session_id}
        return 200, {"deviceId": sender_device(hit, req, self.ctx), "sessionId": ""}

    def pending(self, hit: Hit, req: Request) -> list[Pending] | Dropped:
        """A parsed hit through the pipeline, by its type: the one dispatch every wire format
        (OpenPanel, Umami, Plausible, Segment) goes through. The first item is the hit's own
        row; an identify or alias may add identity links after it."""
        if hit.type == "track":
            outcome = process_track(hit, req, self.ctx)
            return outcome if isinstance(outcome, Dropped) else [outcome]
        if hit.type == "alias" and not req.server_side:
            return Dropped("alias_needs_secret")  # see _may_send; /track answers 403 first
        return process_profile(hit, req, self.ctx)

    # --- many events

    async def _batch(
        self, scope: dict, headers: dict, origin: str, body: bytes
    ) -> tuple[int, dict]:
        doc = decode_json(body)
        if not isinstance(doc, list):
            raise InvalidPayload("invalid_body", "body must be a JSON array of envelopes")
        if len(doc) > MAX_BATCH:
            raise InvalidPayload("batch_too_large", f"at most {MAX_BATCH} envelopes per batch")
        results: list[dict[str, Any]] = [{} for _ in doc]
        pending: list[tuple[int, Pending, ClientInfo, str]] = []
        # envelopes of one batch usually share their credentials: authenticate each set once
        requests: dict[tuple[str, str], Request] = {}
        sender = self.address(scope, headers)
        for n, envelope in enumerate(doc):
            try:
                hit, body_client, body_secret = parse_envelope(envelope)
                req = requests.get((body_client, body_secret))
                if req is None:
                    client, server_side = await self.authenticate(
                        sender, headers, origin, body_client, body_secret
                    )
                    req = self.make_request(
                        sender, headers, client, server_side, bool(origin), scope[ARRIVED]
                    )
                    requests[(body_client, body_secret)] = req
                _may_send(hit, req)
            except InvalidPayload as exc:
                status, reply = self._rejected(exc)
                results[n] = {"status": status, **reply}
                continue
            except AuthError as exc:
                results[n] = {"status": exc.status, "error": exc.code, "detail": exc.detail}
                continue
            except Exception:
                results[n] = {"status": 500, **internal_error(headers)}
                continue
            client = req.client
            try:
                items = self.pending(hit, req)
                if isinstance(items, Dropped):
                    self.counters.count(client.project_id, items.reason)
                    results[n] = {"status": 202, "dropped": items.reason}
                    continue
                pending += [(n, item, client, "") for item in items[1:]]
                pending.append(
                    (n, items[0], client, "accepted" if hit.type == "track" else hit.type)
                )
            except Exception:
                # one envelope that trips a bug must not cost the others their place
                results[n] = {"status": 500, **internal_error(headers)}
        ids = await self.writer.submit_many([p[1] for p in pending]) if pending else []
        accepted = 0
        for (n, _item, client, outcome), (device_id, session_id) in zip(pending, ids, strict=True):
            if not outcome:  # a second row of one envelope (an identify's device link)
                continue
            accepted += 1
            self.counters.count(client.project_id, outcome)
            results[n] = {"status": 200, "deviceId": device_id, "sessionId": session_id}
        return 200, {
            "accepted": accepted,
            "rejected": sum(1 for r in results if r.get("status", 0) >= 400),
            "dropped": sum(1 for r in results if r.get("status") == 202),
            "results": results,
        }

    def _rejected(self, exc: InvalidPayload) -> tuple[int, dict[str, str]]:
        if exc.status == 202:  # accepted on purpose and not stored
            self.counters.count("", exc.code)
            return 202, {"dropped": exc.code, "detail": exc.detail}
        self.counters.count("", "invalid_payload")
        return exc.status, {"error": exc.code, "detail": exc.detail}

    # --- who is sending

    async def authenticate(
        self, sender: str, headers: dict, origin: str, body_client: str, body_secret: str
    ) -> tuple[ClientInfo, bool]:
        client_id = headers.get(b"openpanel-client-id", b"").decode("latin-1").strip()
        client_id = client_id or body_client.strip()
        secret = headers.get(b"openpanel-client-secret", b"").decode("latin-1") or body_secret
        use_default = not client_id
        if use_default:
            client_id = self.config.default_client_id or ""
            if not client_id:
                raise AuthError(
                    401,
                    "missing_client_id",
                    "send your project's client id in the openpanel-client-id header "
                    "(or clientId in the body); create one with `gatrix projects create`",
                )
        return await self.admit(sender, client_id, secret, origin, use_default=use_default)

    async def admit(
        self,
        sender: str,
        client_id: str,
        secret: str,
        origin: str,
        use_default: bool = False,
        keyless: bool = False,
    ) -> tuple[ClientInfo, bool]:
        """The client, if it may send from here, and whether it proved to be the project's
        backend (its secret). A browser must come from an allowed origin; a sender without
        Origin must send the secret, unless `keyless` (wire formats whose own servers ask no
        secret: such a sender is then treated like a visitor, never trusted with `__ip`)."""
        if len(client_id) > 64:
            raise AuthError(401, "unknown_client", "no client with this id")
        found, client = self.directory.cached(client_id, time.monotonic())
        if not found:  # the common case above costs no coroutine
            client = await self.directory.client(client_id)
        if client is None:
            raise AuthError(401, "unknown_client", f"no active client with id {client_id!r}")
        if not client.can_write:
            raise AuthError(403, "client_cannot_write", "this client may only read insights")
        if secret:
            try:
                if await self.directory.secret_ok(client, secret, sender):
                    return client, True
            except SecretsThrottled:
                self.counters.count(client.project_id, "secrets_throttled")
                raise AuthError(
                    429,
                    "too_many_invalid_secrets",
                    "this client received too many wrong secrets in the last seconds; retry "
                    "later with the right one",
                ) from None
            self.counters.count(client.project_id, "invalid_secret")
            raise AuthError(401, "invalid_secret", "the client secret does not match this client")
        if origin:
            if origin_allowed(origin, client.origins) or (use_default and not client.origins):
                return client, False
            self.counters.count(client.project_id, "origin_not_allowed")
            raise AuthError(
                401,
                "origin_not_allowed",
                f"origin {origin!r} is not in this project's allowed origins",
            )
        if use_default or keyless:
            # the configured default project accepts the Gatrix proxy
            return client, False
        self.counters.count(client.project_id, "missing_secret")
        raise AuthError(
            401,
            "missing_secret",
            "requests without an Origin header (server-side) must send openpanel-client-secret",
        )

    def address(self, scope: dict, headers: dict) -> str:
        """The sender's address, through the trusted-proxy rule."""
        peer = (scope.get("client") or ("", 0))[0] or ""
        return self.proxies.client_ip(
            peer,
            headers.get(b"x-forwarded-for", b"").decode("latin-1"),
            headers.get(b"x-real-ip", b"").decode("latin-1"),
        )

    def make_request(
        self,
        sender: str,
        headers: dict,
        client: ClientInfo,
        server_side: bool,
        browser: bool,
        received_ms: int,
    ) -> Request:
        return Request(
            client=client,
            server_side=server_side,
            browser=browser,
            ip=sender,
            user_agent=headers.get(b"user-agent", b"").decode("utf-8", "replace"),
            sdk_name=headers.get(b"openpanel-sdk-name", b"").decode("latin-1"),
            sdk_version=headers.get(b"openpanel-sdk-version", b"").decode("latin-1"),
            received_ms=received_ms,
        )

    # --- replies

    async def _reply(
        self,
        send: Any,
        status: int,
        body: dict | None,
        origin: str,
        preflight: dict | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        payload = _encode(body) if body is not None else b""
        out = [
            (b"access-control-allow-origin", origin.encode("latin-1") if origin else b"*"),
            (b"vary", b"Origin"),
            (b"content-length", str(len(payload)).encode()),
            *(extra or ()),
        ]
        if body is not None:
            out.append((b"content-type", b"application/json"))
        if status == 503:
            out.append((b"retry-after", RETRY_AFTER_S))
        if preflight is not None:
            requested = preflight.get(b"access-control-request-headers")
            out += [
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", requested or ALLOW_HEADERS),
                (b"access-control-max-age", b"86400"),
            ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})
