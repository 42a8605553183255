"""Web sessions and the OpenID tokens already used (both stored as hashes only)."""

from __future__ import annotations

from mautrix.util.async_db import Database

from .records import WebSession


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, id_hash: str, user_id: str, now: int, expires_at: int) -> None:
        await self.db.execute(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            id_hash,
            user_id,
            now,
            expires_at,
        )

    async def get_valid(self, id_hash: str, now: int) -> WebSession | None:
        row = await self.db.fetchrow(
            "SELECT user_id, created_at, expires_at FROM web_sessions"
            " WHERE id_hash=$1 AND expires_at>$2",
            id_hash,
            now,
        )
        if row is None:
            return None
        return WebSession(row["user_id"], int(row["created_at"]), int(row["expires_at"]))

    async def delete(self, id_hash: str) -> None:
        await self.db.execute("DELETE FROM web_sessions WHERE id_hash=$1", id_hash)

    async def mark_token_seen(self, token_hash: str, expires_at: int, now: int) -> bool:
        """Remember a used OpenID token; False when it was already seen and not expired.

        One upsert decides, so of two concurrent requests with the same token only one
        gets True.
        """
        inserted = await self.db.fetchval(
            "INSERT INTO seen_openid_tokens (token_hash, expires_at) VALUES ($1, $2)"
            " ON CONFLICT (token_hash) DO UPDATE SET expires_at=excluded.expires_at"
            " WHERE seen_openid_tokens.expires_at <= $3 RETURNING token_hash",
            token_hash,
            expires_at,
            now,
        )
        return inserted is not None

    async def purge_expired(self, now: int) -> None:
        await self.db.execute("DELETE FROM web_sessions WHERE expires_at<=$1", now)
        await self.db.execute("DELETE FROM seen_openid_tokens WHERE expires_at<=$1", now)
