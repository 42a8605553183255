"""People a re-check found no longer qualifying for a binding, until they qualify again.

A row is written when a complete re-check first misses someone; the binding's grace
period counts from `first_at`; `acted_at` says when the policy acted (kick, notify or
dry-run), so it acts once. A later re-check that finds them qualifying deletes the row.
"""

from __future__ import annotations

from typing import Any

import attrs
from mautrix.util.async_db import Database


@attrs.frozen
class Loss:
    binding_id: int
    user_id: str
    first_at: int
    reason: str  # the rule no longer met, in words
    acted_at: int | None
    action: str | None

    @classmethod
    def from_row(cls, row: Any) -> Loss:
        acted_at = row["acted_at"]
        return cls(
            binding_id=int(row["binding_id"]),
            user_id=row["user_id"],
            first_at=int(row["first_at"]),
            reason=row["reason"],
            acted_at=None if acted_at is None else int(acted_at),
            action=row["action"],
        )


_COLUMNS = "binding_id, user_id, first_at, reason, acted_at, action"


class LossStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def note(self, binding_id: int, user_id: str, now: int, reason: str) -> Loss:
        """The person's loss, recorded now unless it already was (then kept as it was)."""
        await self.db.execute(
            "INSERT INTO losses (binding_id, user_id, first_at, reason) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (binding_id, user_id) DO NOTHING",
            binding_id,
            user_id,
            now,
            reason,
        )
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM losses WHERE binding_id=$1 AND user_id=$2",
            binding_id,
            user_id,
        )
        return Loss.from_row(row)

    async def acted(self, binding_id: int, user_id: str, now: int, action: str) -> bool:
        """Mark the loss acted on; False if it was already (another instance did)."""
        done = await self.db.fetchval(
            "UPDATE losses SET acted_at=$3, action=$4"
            " WHERE binding_id=$1 AND user_id=$2 AND acted_at IS NULL RETURNING user_id",
            binding_id,
            user_id,
            now,
            action,
        )
        return done is not None

    async def clear(self, binding_id: int, user_id: str) -> Loss | None:
        """They qualify again: forget the loss; returns it, if there was one."""
        row = await self.db.fetchrow(
            f"DELETE FROM losses WHERE binding_id=$1 AND user_id=$2 RETURNING {_COLUMNS}",
            binding_id,
            user_id,
        )
        return None if row is None else Loss.from_row(row)

    async def for_binding(self, binding_id: int) -> list[Loss]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM losses WHERE binding_id=$1 ORDER BY first_at, user_id",
            binding_id,
        )
        return [Loss.from_row(row) for row in rows]

    async def qualifies_otherwise(self, user_id: str, room_id: str, binding_id: int) -> bool:
        """Whether the person holds another way into the room: a grant of another live
        binding of the room that no re-check has acted against, or a grant from any invite
        link to the room (a link's admission is not the binding's to take back)."""
        other = await self.db.fetchval(
            "SELECT 1 FROM grants g JOIN binding_rooms r ON r.binding_id = g.binding_id"
            " JOIN bindings b ON b.id = g.binding_id"
            " WHERE g.user_id=$1 AND r.room_id=$2 AND g.binding_id<>$3 AND b.removed_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM losses l WHERE l.binding_id = g.binding_id"
            "  AND l.user_id = g.user_id AND l.acted_at IS NOT NULL)"
            " UNION ALL SELECT 1 FROM grants g JOIN invite_link_rooms r ON r.link_id = g.link_id"
            " WHERE g.user_id=$1 AND r.room_id=$2 LIMIT 1",
            user_id,
            room_id,
            binding_id,
        )
        return other is not None
