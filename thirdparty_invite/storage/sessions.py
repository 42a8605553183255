"""Web sessions, each carrying the OpenID token that opened it (both stored as hashes only).

The token hash is unique: opening a session spends the token in the same statement, and a
second session with the same token inserts nothing (a replay). A row stays until both its
session and its token have expired; closing a session only ends it, so its token stays
refused. See migration v2.
"""

from __future__ import annotations

from typing import Any

from mautrix.util.async_db import Database

from .records import WebSession


def _rows_changed(result: Any) -> int:
    """How many rows an INSERT/UPDATE/DELETE run by `Database.execute` changed: SQLite gives
    a cursor, asyncpg its status line ("INSERT 0 1")."""
    if isinstance(result, str):
        return int(result.rsplit(" ", 1)[-1])
    return int(result.rowcount)


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        id_hash: str,
        user_id: str,
        now: int,
        expires_at: int,
        token_hash: str | None,
        token_expires_at: int,
    ) -> bool:
        """Open a session with an OpenID token; False (nothing written) when a session was
        already opened with that token. `token_hash` None: the Matrix ID was proven another
        way (NULLs never conflict), and `token_expires_at` may be 0.

        One statement, one round trip: no RETURNING, whose row SQLite would make us fetch
        and close in two more trips to its worker thread; the changed-row count says it all.
        Of concurrent inserts with one token, exactly one changes a row (unique index).
        """
        result = await self.db.execute(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at,"
            " openid_token_hash, token_expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (openid_token_hash) DO NOTHING",
            id_hash,
            user_id,
            now,
            expires_at,
            token_hash,
            token_expires_at,
        )
        return _rows_changed(result) == 1

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

    async def end(self, id_hash: str, now: int) -> None:
        """End a session. The row stays until purged: its token must stay refused."""
        await self.db.execute(
            "UPDATE web_sessions SET expires_at=$2 WHERE id_hash=$1 AND expires_at>$2",
            id_hash,
            now,
        )

    async def purge_expired(self, now: int) -> None:
        """Forget sessions that have ended and whose OpenID token has expired."""
        await self.db.execute(
            "DELETE FROM web_sessions WHERE expires_at<=$1 AND token_expires_at<=$1", now
        )
