"""Credentials a provider keeps while the bot runs, by provider id and name: Patreon's
creator token pair, refreshed with a refresh token that works once, must outlive a
restart or the next refresh fails. One row each; a save replaces it in one statement
(an upsert), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from mautrix.util.async_db import Database


class ProviderCredentialStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, provider: str, name: str) -> str | None:
        return await self.db.fetchval(
            "SELECT value FROM provider_credentials WHERE provider=$1 AND name=$2",
            provider,
            name,
        )

    async def save(self, provider: str, name: str, value: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO provider_credentials (provider, name, value, updated_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (provider, name)"
            " DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
            provider,
            name,
            value,
            now,
        )
