"""Invite links: their hashed tokens, rooms, uses, expiry and revocation."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from .records import InviteLink

_LINK_COLUMNS = "id, created_by, created_at, expires_at, max_uses, uses, revoked_at"


class LinkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        token_hash: str,
        created_by: str,
        rooms: tuple[str, ...],
        expires_at: int | None,
        max_uses: int | None,
        now: int,
    ) -> InviteLink:
        async with self.db.acquire() as conn, conn.transaction():
            link_id = await conn.fetchval(
                "INSERT INTO invite_links (token_hash, created_by, created_at, expires_at,"
                " max_uses) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                token_hash,
                created_by,
                now,
                expires_at,
                max_uses,
            )
            for room_id in rooms:
                await conn.execute(
                    "INSERT INTO invite_link_rooms (link_id, room_id) VALUES ($1, $2)",
                    link_id,
                    room_id,
                )
        return InviteLink(
            id=int(link_id),
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
            max_uses=max_uses,
            uses=0,
            revoked_at=None,
            rooms=rooms,
        )

    async def _rooms(self, conn: Connection, link_id: int) -> tuple[str, ...]:
        rows = await conn.fetch(
            "SELECT room_id FROM invite_link_rooms WHERE link_id=$1 ORDER BY room_id", link_id
        )
        return tuple(row["room_id"] for row in rows)

    async def get_by_token_hash(self, token_hash: str) -> InviteLink | None:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_LINK_COLUMNS} FROM invite_links WHERE token_hash=$1", token_hash
            )
            if row is None:
                return None
            return InviteLink.from_row(row, await self._rooms(conn, int(row["id"])))

    async def get(self, link_id: int) -> InviteLink | None:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_LINK_COLUMNS} FROM invite_links WHERE id=$1", link_id
            )
            if row is None:
                return None
            return InviteLink.from_row(row, await self._rooms(conn, link_id))

    async def list_for_room(self, room_id: str) -> list[InviteLink]:
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_LINK_COLUMNS} FROM invite_links WHERE id IN"
                " (SELECT link_id FROM invite_link_rooms WHERE room_id=$1) ORDER BY id",
                room_id,
            )
            return [InviteLink.from_row(row, await self._rooms(conn, row["id"])) for row in rows]

    async def revoke(self, link_id: int, revoked_by: str, now: int) -> bool:
        """Revoke a link; False when it does not exist or was already revoked."""
        revoked = await self.db.fetchval(
            "UPDATE invite_links SET revoked_at=$2, revoked_by=$3"
            " WHERE id=$1 AND revoked_at IS NULL RETURNING id",
            link_id,
            now,
            revoked_by,
        )
        return revoked is not None

    @staticmethod
    async def take_use(conn: Connection, link_id: int, now: int) -> bool:
        """Count one use, atomically, if the link still admits one (call in a transaction).

        A single conditional UPDATE is what makes 100 concurrent claims of a 10-use link
        produce exactly 10 successes: Postgres re-checks the WHERE clause after taking the
        row lock, and SQLite runs one writer at a time.
        """
        taken = await conn.fetchval(
            "UPDATE invite_links SET uses = uses + 1 WHERE id=$1 AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > $2)"
            " AND (max_uses IS NULL OR uses < max_uses) RETURNING uses",
            link_id,
            now,
        )
        return taken is not None

    async def grantees_of_room(self, room_id: str) -> list[tuple[str, int]]:
        """(person, grant id) for each grant from a link naming the room that was not
        revoked, oldest grant first: who a room added later to a space is owed to."""
        rows = await self.db.fetch(
            "SELECT g.user_id, g.id FROM grants g"
            " JOIN invite_link_rooms r ON r.link_id = g.link_id"
            " JOIN invite_links l ON l.id = g.link_id"
            " WHERE r.room_id=$1 AND l.revoked_at IS NULL ORDER BY g.id",
            room_id,
        )
        return [(str(row["user_id"]), int(row["id"])) for row in rows]
