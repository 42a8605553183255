"""Browser sessions opened after a Matrix ID was proven: random ids, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from ..durations import now_ms
from ..storage import Storage, WebSession

COOKIE_NAME = "tpi_session"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class WebSessionService:
    def __init__(self, storage: Storage, lifetime_seconds: float) -> None:
        self.storage = storage
        self.lifetime_ms = int(lifetime_seconds * 1000)

    async def open(self, user_id: str) -> tuple[str, WebSession]:
        """A new session id (for the cookie only; the database keeps its hash)."""
        session_id = secrets.token_urlsafe(32)
        now = now_ms()
        session = WebSession(user_id, now, now + self.lifetime_ms)
        await self.storage.sessions.create(
            _hash(session_id), user_id, session.created_at, session.expires_at
        )
        return session_id, session

    async def get(self, session_id: str | None) -> WebSession | None:
        if not session_id or len(session_id) > 128:
            return None
        return await self.storage.sessions.get_valid(_hash(session_id), now_ms())

    async def close(self, session_id: str) -> None:
        await self.storage.sessions.delete(_hash(session_id))


class DatabaseReplayGuard:
    """The verifier's memory of used OpenID tokens, kept in the plugin database."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def mark_seen(self, token_hash: bytes, expires_at_ms: int) -> bool:
        return await self.storage.sessions.mark_token_seen(
            token_hash.hex(), expires_at_ms, now_ms()
        )
