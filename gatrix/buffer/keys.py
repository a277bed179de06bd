"""Every Redis key the product uses, and how long each lives: the keyspace in one place.

All keys start with the configured prefix (`GATRIX_REDIS_PREFIX`), so several installations
can share one Redis. The embedded server's owner token is the one fixed name.
"""

from __future__ import annotations

import hashlib

import msgspec

_json = msgspec.json.Encoder().encode

EMBEDDED_OWNER_KEY = "gatrix:embedded-owner"
WEB_SESSION_TTL_S = 14 * 86400
SHARE_UNLOCK_TTL_S = 7 * 86400
THROTTLE_WINDOW_S = 15 * 60
INGEST_STATS_TTL_S = 40 * 86400
FLASH_TTL_S = 300
# a visit's key outlives the session timeout a little, so a late event still finds it
VISIT_KEY_GRACE_MS = 60_000


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # the buffer and its flush
        self.buffer = f"{prefix}:buffer"
        self.claims = f"{prefix}:claims"
        self.deadletter = f"{prefix}:deadletter"
        self.last_flush = f"{prefix}:last_flush"
        self.attempts = f"{prefix}:claim_attempts"
        # batch id → how many items at the head of the batch are stored (deleted at the ack)
        self.progress = f"{prefix}:claim_progress"
        # project id → when its last event was accepted (ms), a sorted set written with GT so
        # processes only move it forward (TTL: INGEST_STATS_TTL_S, renewed on each write)
        self.last_accepted = f"{prefix}:stats:last-accepted"
        self.session_prefix = f"{prefix}:s:"
        # the SAQ queue's own keys all start with this name
        self.queue_name = prefix
        # what the processes of one server tell each other (see gatrix.ingest.siblings)
        self.directory_generation = f"{prefix}:procs:directory"
        self.process_report = f"{prefix}:procs:report:"

    def processing(self, batch_id: str) -> str:
        return f"{self.buffer}:processing:{batch_id}"

    def session(self, project_id: str, device_id: str) -> str:
        """A visitor's live session (TTL: the session timeout + VISIT_KEY_GRACE_MS)."""
        # JSON-encoded: a client-chosen device id cannot smuggle the push call's separators;
        # long ones are hashed, so a sender cannot make each key cost hundreds of bytes
        if len(device_id) > 64:
            device_id = "#" + hashlib.blake2b(device_id.encode(), digest_size=16).hexdigest()
        return f"{self.session_prefix}{project_id}:{_json(device_id).decode()}"

    def person_session(self, project_id: str, profile_id: str) -> str:
        """The live session of a person a backend tracks without naming a device. Its keys
        start with `p:`, which no JSON-encoded device id (a device session key) can."""
        if len(profile_id) > 64:
            profile_id = "#" + hashlib.blake2b(profile_id.encode(), digest_size=16).hexdigest()
        return f"{self.session_prefix}{project_id}:p:{_json(profile_id).decode()}"

    def message(self, project_id: str, message_id: str) -> str:
        """A sender's message id already buffered (TTL: GATRIX_MESSAGE_DEDUP_HOURS): its
        retries are skipped. Hashed, so any id costs the same few bytes and no separator."""
        digest = hashlib.blake2b(message_id.encode(), digest_size=12).hexdigest()
        return f"{self.prefix}:msg:{project_id}:{digest}"

    def ingest_stats(self, day: str) -> str:
        """Per-project outcome counts of one UTC day (TTL: INGEST_STATS_TTL_S)."""
        return f"{self.prefix}:stats:{day}"

    def web_session(self, token: str) -> str:
        """A logged-in browser session → user id (TTL: WEB_SESSION_TTL_S)."""
        return f"{self.prefix}:web:{token}"

    def share_unlock(self, key: str) -> str:
        """An unlocked password-protected share link → its token (TTL: SHARE_UNLOCK_TTL_S)."""
        return f"{self.prefix}:shareok:{key}"

    def flash(self, token: str) -> str:
        """What a form's result page shows once after its redirect (TTL: FLASH_TTL_S)."""
        return f"{self.prefix}:flash:{token}"

    def erasing(self, project_id: str) -> str:
        """Held while a person of this project is being erased (TTL: erase.LOCK_S)."""
        return f"{self.prefix}:erasing:{project_id}"

    def throttle(self, action: str, scope: str, value: str) -> str:
        """Failed attempts of an action per account/link/IP (TTL: THROTTLE_WINDOW_S)."""
        return f"{self.prefix}:{action}fail:{scope}:{value}"
