"""The durable invite queue: one row per (room, person), worked by InviteQueue."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from .records import QueuedInvite

_COLUMNS = (
    "id, room_id, user_id, grant_id, state, outcome, errcode, error, attempts,"
    " next_attempt_at, updated_at, queued_at, action, reason"
)


class QueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def enqueue(
        conn: Connection, room_id: str, user_id: str, grant_id: int | None, now: int
    ) -> None:
        """Queue an invite; a finished or failed row for the same pair is queued again.

        A pending invite is left alone, so a double claim never makes two invites; the
        worker checks membership before inviting, so re-queueing a finished row is safe.
        A pending kick gives way: the person qualifies again.
        """
        await conn.execute(
            "INSERT INTO invite_queue (room_id, user_id, grant_id, state, attempts,"
            " next_attempt_at, created_at, updated_at, queued_at, action)"
            " VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4, $4, 'invite')"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET state='pending', outcome=NULL,"
            " errcode=NULL, error=NULL, attempts=0, grant_id=excluded.grant_id,"
            " next_attempt_at=excluded.next_attempt_at, updated_at=excluded.updated_at,"
            " queued_at=excluded.queued_at, action='invite', reason=NULL"
            " WHERE invite_queue.state <> 'pending' OR invite_queue.action <> 'invite'",
            room_id,
            user_id,
            grant_id,
            now,
        )

    @staticmethod
    async def enqueue_kick(
        conn: Connection, room_id: str, user_id: str, reason: str, now: int
    ) -> None:
        """Queue removing someone who no longer qualifies; an invite still pending for
        them is replaced (it must not go out any more)."""
        await conn.execute(
            "INSERT INTO invite_queue (room_id, user_id, state, attempts, next_attempt_at,"
            " created_at, updated_at, queued_at, action, reason)"
            " VALUES ($1, $2, 'pending', 0, $3, $3, $3, $3, 'kick', $4)"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET state='pending', outcome=NULL,"
            " errcode=NULL, error=NULL, attempts=0, next_attempt_at=excluded.next_attempt_at,"
            " updated_at=excluded.updated_at, queued_at=excluded.queued_at, action='kick',"
            " reason=excluded.reason",
            room_id,
            user_id,
            now,
            reason,
        )

    async def due(self, now: int, limit: int) -> list[QueuedInvite]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM invite_queue WHERE state='pending' AND next_attempt_at<=$1"
            " ORDER BY next_attempt_at, id LIMIT $2",
            now,
            limit,
        )
        return [QueuedInvite.from_row(row) for row in rows]

    async def next_due_at(self) -> int | None:
        value = await self.db.fetchval(
            "SELECT MIN(next_attempt_at) FROM invite_queue WHERE state='pending'"
        )
        return None if value is None else int(value)

    async def finish(self, invite_id: int, outcome: str, now: int) -> None:
        await self.db.execute(
            "UPDATE invite_queue SET state='done', outcome=$2, errcode=NULL, error=NULL,"
            " attempts=attempts+1, updated_at=$3 WHERE id=$1",
            invite_id,
            outcome,
            now,
        )

    async def fail(self, invite_id: int, errcode: str, error: str, now: int) -> None:
        await self.db.execute(
            "UPDATE invite_queue SET state='failed', errcode=$2, error=$3,"
            " attempts=attempts+1, updated_at=$4 WHERE id=$1",
            invite_id,
            errcode,
            error,
            now,
        )

    async def retry_later(
        self,
        invite_id: int,
        next_attempt_at: int,
        errcode: str,
        error: str,
        now: int,
        *,
        count_attempt: bool = True,
    ) -> None:
        # A rate limit is the server pacing us, not a failure: it does not use up attempts.
        await self.db.execute(
            "UPDATE invite_queue SET next_attempt_at=$2, errcode=$3, error=$4,"
            " attempts=attempts+$5, updated_at=$6 WHERE id=$1",
            invite_id,
            next_attempt_at,
            errcode,
            error,
            1 if count_attempt else 0,
            now,
        )

    async def for_user(self, user_id: str) -> list[QueuedInvite]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM invite_queue WHERE user_id=$1 AND action='invite'"
            " ORDER BY id",
            user_id,
        )
        return [QueuedInvite.from_row(row) for row in rows]

    async def counts_for_room(self, room_id: str) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT state, COUNT(*) AS n FROM invite_queue WHERE room_id=$1 AND action='invite'"
            " GROUP BY state",
            room_id,
        )
        return {row["state"]: int(row["n"]) for row in rows}

    async def all(self) -> list[QueuedInvite]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM invite_queue ORDER BY id")
        return [QueuedInvite.from_row(row) for row in rows]

    async def users_queued_in(self, room_id: str) -> set[str]:
        """People with a row for the room that did not fail (pending, or done whatever the
        outcome): a catch-up leaves them alone, and queues the others."""
        rows = await self.db.fetch(
            "SELECT user_id FROM invite_queue WHERE room_id=$1 AND state <> 'failed'", room_id
        )
        return {str(row["user_id"]) for row in rows}

    async def due_now(self, room_id: str, now: int) -> None:
        """Rows waiting out a backoff for a room the bot has just joined are due now."""
        await self.db.execute(
            "UPDATE invite_queue SET next_attempt_at=$2 WHERE room_id=$1 AND state='pending'"
            " AND next_attempt_at > $2",
            room_id,
            now,
        )
