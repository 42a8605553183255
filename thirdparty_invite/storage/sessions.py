"""Web sessions, each carrying the OpenID token that opened it (both stored as hashes only).

The token hash is unique: opening a session spends the token in the same statement, and a
second session with the same token inserts nothing (a replay). A row stays until both its
session and its token have expired; closing a session only ends it, so its token stays
refused. See migration v2.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mautrix.util.async_db import Database

from .records import WebSession


def _rows_changed(result: Any) -> int:
    """How many rows an INSERT/UPDATE/DELETE run by `Database.execute` changed: SQLite gives
    a cursor, asyncpg its status line ("INSERT 0 1")."""
    if isinstance(result, str):
        return int(result.rsplit(" ", 1)[-1])
    return int(result.rowcount)


_INSERT = (
    "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at, openid_token_hash,"
    " token_expires_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (openid_token_hash)"
    " DO NOTHING"
)
# Sign-ins written together at most; a batch's SELECT has one placeholder per row.
_MAX_BATCH = 64

SessionRow = tuple[str, str, int, int, "str | None", int]


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Sign-ins waiting to be written, and the task writing them (see create()).
        self._waiting: list[tuple[SessionRow, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task | None = None

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

        Sign-ins that arrive while one is being written are written together, in one
        transaction: maubot gives a plugin one SQLite connection, and sixteen sign-ins
        each waiting for it in turn made the slowest wait for all the others (p99). A
        lone sign-in is one statement, one round trip. Of concurrent inserts with one
        token, exactly one opens a session (unique index), batched or not.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        row: SessionRow = (id_hash, user_id, now, expires_at, token_hash, token_expires_at)
        self._waiting.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await future

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:_MAX_BATCH]
            del self._waiting[:_MAX_BATCH]
            try:
                opened = await self._insert([row for row, _ in batch])
            except BaseException as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            for (_, future), ok in zip(batch, opened, strict=True):
                if not future.done():  # the sign-in's request may have gone away
                    future.set_result(ok)

    async def _insert(self, rows: list[SessionRow]) -> list[bool]:
        if len(rows) == 1:
            # No RETURNING: SQLite would make us fetch and close its row in two more trips
            # to its worker thread; the changed-row count says it all.
            return [_rows_changed(await self.db.execute(_INSERT, *rows[0])) == 1]
        ids = [row[0] for row in rows]
        placeholders = ", ".join(f"${i}" for i in range(1, len(ids) + 1))
        async with self.db.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT, rows)
            found = await conn.fetch(
                f"SELECT id_hash FROM web_sessions WHERE id_hash IN ({placeholders})", *ids
            )
        opened = {row["id_hash"] for row in found}
        return [id_hash in opened for id_hash in ids]

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
