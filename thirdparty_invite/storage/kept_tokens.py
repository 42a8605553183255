"""Refresh tokens kept for per-person re-checks, sealed (thirdparty_invite/sealing.py seals
them; this store never sees one in the clear)."""

from __future__ import annotations

from mautrix.util.async_db import Database


class KeptTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, provider: str, external_id: str, sealed: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO kept_tokens (provider, external_id, sealed, updated_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (provider, external_id)"
            " DO UPDATE SET sealed=excluded.sealed, updated_at=excluded.updated_at",
            provider,
            external_id,
            sealed,
            now,
        )

    async def get(self, provider: str, external_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT sealed FROM kept_tokens WHERE provider=$1 AND external_id=$2",
            provider,
            external_id,
        )

    async def delete(self, provider: str, external_id: str) -> None:
        await self.db.execute(
            "DELETE FROM kept_tokens WHERE provider=$1 AND external_id=$2", provider, external_id
        )

    async def forget_unused(self) -> int:
        """Drop tokens of accounts that hold no seat any more (their bindings removed
        them, or were removed): nothing needs them."""
        rows = await self.db.fetch(
            "DELETE FROM kept_tokens WHERE NOT EXISTS (SELECT 1 FROM account_slots s"
            " JOIN bindings b ON b.id = s.binding_id WHERE b.removed_at IS NULL"
            " AND s.provider = kept_tokens.provider AND s.external_id = kept_tokens.external_id)"
            " RETURNING provider"
        )
        return len(rows)
