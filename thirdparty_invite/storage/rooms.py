"""A room's rows as a whole: which rooms the bot manages, and moving them to a replacement
room when a room is upgraded (m.room.tombstone)."""

from __future__ import annotations

from collections.abc import Collection

import attrs
from mautrix.util.async_db import Connection, Database

from .queue import QueueStore

# Outcomes that mean "the bot's invite reached the old room": after an upgrade that invite
# leads to a dead room, so the person is invited to the replacement too.
_INVITED_OUTCOMES = ("invited", "already_invited")


@attrs.frozen
class RoomHoldings:
    """What a room has that an upgrade must carry over."""

    links: int
    bindings: int
    pending_invites: int

    @property
    def empty(self) -> bool:
        return not (self.links or self.bindings or self.pending_invites)


@attrs.frozen
class RoomMove:
    """What moving a room's rows to its replacement carried over."""

    links: int = 0
    bindings: int = 0
    moved_invites: int = 0  # pending rows, now pending in the new room
    requeued_invites: int = 0  # people whose invite led into the old room, queued again
    # The upgrade was moved before (its `room_upgraded` audit entry exists): only rows that
    # reached the old room since then moved, and nobody was queued again.
    repeated: bool = False

    @property
    def empty(self) -> bool:
        return not (self.links or self.bindings or self.moved_invites or self.requeued_invites)

    @property
    def invites(self) -> int:
        return self.moved_invites + self.requeued_invites

    def describe(self) -> str:
        return (
            f"links {self.links}, bindings {self.bindings}, invites moved"
            f" {self.moved_invites}, re-queued {self.requeued_invites}"
        )


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def managed_rooms(self) -> list[str]:
        """Rooms with invite links, bindings or invites still to deliver."""
        rows = await self.db.fetch(
            "SELECT room_id FROM invite_link_rooms UNION SELECT room_id FROM binding_rooms"
            " UNION SELECT room_id FROM invite_queue WHERE state='pending'"
        )
        return sorted(str(row["room_id"]) for row in rows)

    async def holdings(self, room_id: str) -> RoomHoldings:
        links = await self.db.fetchval(
            "SELECT COUNT(*) FROM invite_link_rooms WHERE room_id=$1", room_id
        )
        bindings = await self.db.fetchval(
            "SELECT COUNT(*) FROM binding_rooms WHERE room_id=$1", room_id
        )
        pending = await self.db.fetchval(
            "SELECT COUNT(*) FROM invite_queue WHERE room_id=$1 AND state='pending'", room_id
        )
        return RoomHoldings(int(links), int(bindings), int(pending))

    async def move(
        self,
        old_room: str,
        new_room: str,
        *,
        upgraded_at: int,
        still_invited: Collection[str],
        actor: str,
        now: int,
    ) -> RoomMove:
        """Carry a room's rows over to its replacement, in one transaction.

        - Link rooms: each link that named the old room names the new one instead (a link
          that already named both keeps one row). Tokens are untouched: old URLs still work.
        - Bindings: moved.
        - Pending invites: queued for the new room and removed from the old one. They get
          new row ids on purpose: if the queue worker is inviting from a batch it read
          before the move, it records its outcome on the old id (gone: nothing recorded)
          and the new row is still delivered to the new room, never marked done by an
          invite that went to the old one.
        - Finished rows stay in the old room as history, except people whose invite led
          into the old room when it was already dead: done (invited) or failed since
          `upgraded_at`, or still holding an unanswered invite there (`still_invited`).
          They are queued for the new room too (the queue skips people already there).
        - A row in the new room for the same person is never duplicated (unique key):
          `QueueStore.enqueue` leaves a pending one alone and re-queues a finished one.
        - One audit entry records the move; it also marks the upgrade as moved. Moving it
          again (a second tombstone, the invite's second delivery, a restart) re-queues
          nobody, since the first move did, and only carries what reached the old room
          since (a claim that read the room list before the move); when that is nothing,
          nothing is written either.

        Callers serialise moves of one old room (PostgreSQL's READ COMMITTED would let two
        concurrent moves both miss the other's audit entry).
        """
        still_invited = frozenset(still_invited)
        async with self.db.acquire() as conn, conn.transaction():
            repeated = await _upgrade_recorded(conn, old_room, new_room)
            links = await conn.fetchval(
                "SELECT COUNT(*) FROM invite_link_rooms WHERE room_id=$1", old_room
            )
            await conn.execute(
                "UPDATE invite_link_rooms SET room_id=$2 WHERE room_id=$1 AND link_id NOT IN"
                " (SELECT link_id FROM invite_link_rooms WHERE room_id=$2)",
                old_room,
                new_room,
            )
            await conn.execute("DELETE FROM invite_link_rooms WHERE room_id=$1", old_room)
            bindings = await conn.fetchval(
                "SELECT COUNT(*) FROM binding_rooms WHERE room_id=$1", old_room
            )
            await conn.execute(
                "UPDATE binding_rooms SET room_id=$2 WHERE room_id=$1 AND binding_id NOT IN"
                " (SELECT binding_id FROM binding_rooms WHERE room_id=$2)",
                old_room,
                new_room,
            )
            await conn.execute("DELETE FROM binding_rooms WHERE room_id=$1", old_room)
            rows = await conn.fetch(
                "SELECT id, user_id, grant_id, state, outcome, updated_at, action, reason"
                " FROM invite_queue WHERE room_id=$1 ORDER BY id",
                old_room,
            )
            moved = requeued = 0
            for row in rows:
                grant_id = None if row["grant_id"] is None else int(row["grant_id"])
                state, user_id = row["state"], row["user_id"]
                since_upgrade = int(row["updated_at"]) >= upgraded_at
                if state == "pending" and row["action"] == "kick":
                    # A removal a binding's policy asked for follows the room, as a removal.
                    await QueueStore.enqueue_kick(conn, new_room, user_id, row["reason"], now)
                    await conn.execute("DELETE FROM invite_queue WHERE id=$1", row["id"])
                    moved += 1
                elif state == "pending":
                    await QueueStore.enqueue(conn, new_room, user_id, grant_id, now)
                    await conn.execute("DELETE FROM invite_queue WHERE id=$1", row["id"])
                    moved += 1
                elif repeated or row["action"] != "invite":
                    continue
                elif (
                    state == "done"
                    and row["outcome"] in _INVITED_OUTCOMES
                    and (since_upgrade or user_id in still_invited)
                ) or (state == "failed" and since_upgrade):
                    await QueueStore.enqueue(conn, new_room, user_id, grant_id, now)
                    requeued += 1
            result = RoomMove(int(links), int(bindings), moved, requeued, repeated)
            if result.empty and repeated:
                return result
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action, room_id, target, detail)"
                " VALUES ($1, $2, 'room_upgraded', $3, $4, $5)",
                now,
                actor,
                old_room,
                new_room,
                result.describe(),
            )
        return result

    async def was_moved(self, old_room: str, new_room: str) -> bool:
        """Whether the rows of `old_room` were moved to `new_room` (ever, restarts included)."""
        async with self.db.acquire() as conn:
            return await _upgrade_recorded(conn, old_room, new_room)

    async def was_told(self, room_id: str, action: str, target: str) -> bool:
        """Whether the audit log already records this action (e.g. a notice posted)."""
        found = await self.db.fetchval(
            "SELECT id FROM audit_log WHERE room_id=$1 AND action=$2 AND target=$3 LIMIT 1",
            room_id,
            action,
            target,
        )
        return found is not None


async def _upgrade_recorded(conn: Connection, old_room: str, new_room: str) -> bool:
    found = await conn.fetchval(
        "SELECT id FROM audit_log WHERE room_id=$1 AND action='room_upgraded' AND target=$2"
        " LIMIT 1",
        old_room,
        new_room,
    )
    return found is not None
