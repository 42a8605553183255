"""Who came into a room and how, for the panel: grants from its links and bindings, its
invites waiting or failed."""

from __future__ import annotations

from collections.abc import Collection

import attrs
from mautrix.util.async_db import Database

from .queue import _COLUMNS as _QUEUE_COLUMNS
from .records import QueuedInvite


@attrs.frozen
class GrantedPerson:
    user_id: str
    at: int
    link_id: int | None
    binding_public_id: str | None


class RoomPeopleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def granted(self, room_id: str, limit: int) -> list[GrantedPerson]:
        """Grants from the links and bindings naming the room, newest first."""
        rows = await self.db.fetch(
            "SELECT g.user_id, g.created_at, g.link_id, NULL AS public_id FROM grants g"
            " JOIN invite_link_rooms r ON r.link_id = g.link_id WHERE r.room_id=$1"
            " UNION ALL"
            " SELECT g.user_id, g.created_at, NULL AS link_id, b.public_id FROM grants g"
            " JOIN binding_rooms r ON r.binding_id = g.binding_id"
            " JOIN bindings b ON b.id = g.binding_id WHERE r.room_id=$1"
            " ORDER BY created_at DESC LIMIT $2",
            room_id,
            limit,
        )
        return [
            GrantedPerson(
                str(row["user_id"]),
                int(row["created_at"]),
                None if row["link_id"] is None else int(row["link_id"]),
                row["public_id"],
            )
            for row in rows
        ]

    async def accounts(self, room_id: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """The external accounts (provider id, display name) that admitted each person
        through the bindings naming the room, by (binding public id, Matrix ID)."""
        rows = await self.db.fetch(
            "SELECT b.public_id, s.user_id, s.provider, s.display_name FROM account_slots s"
            " JOIN bindings b ON b.id = s.binding_id"
            " JOIN binding_rooms r ON r.binding_id = s.binding_id WHERE r.room_id=$1"
            " ORDER BY s.provider",
            room_id,
        )
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for row in rows:
            if row["display_name"]:
                key = (row["public_id"], row["user_id"])
                found.setdefault(key, []).append((row["provider"], row["display_name"]))
        return found

    async def link_claims(self, link_ids: Collection[int]) -> dict[int, list[tuple[str, int]]]:
        """(person, when) of each claim of these links, oldest first."""
        if not link_ids:
            return {}
        ids = ", ".join(str(int(i)) for i in link_ids)  # our own integer ids
        rows = await self.db.fetch(
            f"SELECT link_id, user_id, created_at FROM grants WHERE link_id IN ({ids})"
            " ORDER BY created_at, id"
        )
        claims: dict[int, list[tuple[str, int]]] = {}
        for row in rows:
            claims.setdefault(int(row["link_id"]), []).append(
                (str(row["user_id"]), int(row["created_at"]))
            )
        return claims

    async def invites(self, room_id: str, state: str, limit: int) -> list[QueuedInvite]:
        rows = await self.db.fetch(
            f"SELECT {_QUEUE_COLUMNS} FROM invite_queue WHERE room_id=$1 AND state=$2"
            " AND action='invite' ORDER BY updated_at DESC, id DESC LIMIT $3",
            room_id,
            state,
            limit,
        )
        return [QueuedInvite.from_row(row) for row in rows]

    async def failed_invite(self, room_id: str, user_id: str) -> QueuedInvite | None:
        row = await self.db.fetchrow(
            f"SELECT {_QUEUE_COLUMNS} FROM invite_queue WHERE room_id=$1 AND user_id=$2"
            " AND state='failed' AND action='invite'",
            room_id,
            user_id,
        )
        return None if row is None else QueuedInvite.from_row(row)

    async def live_grant(
        self, grant_id: int, user_id: str
    ) -> tuple[int | None, int | None, str | None] | None:
        """(link id, binding id, external id) of the person's grant when it still admits
        them: its link not revoked, its binding not removed nor acted against for a loss."""
        row = await self.db.fetchrow(
            "SELECT g.link_id, g.binding_id, g.external_id FROM grants g"
            " LEFT JOIN invite_links l ON l.id = g.link_id"
            " LEFT JOIN bindings b ON b.id = g.binding_id"
            " WHERE g.id=$1 AND g.user_id=$2"
            " AND (l.id IS NULL OR l.revoked_at IS NULL)"
            " AND (b.id IS NULL OR b.removed_at IS NULL)"
            " AND (g.link_id IS NOT NULL OR g.binding_id IS NOT NULL)"
            " AND NOT EXISTS (SELECT 1 FROM losses x WHERE x.binding_id = g.binding_id"
            "  AND x.user_id = g.user_id)",
            grant_id,
            user_id,
        )
        if row is None:
            return None
        link_id, binding_id = row["link_id"], row["binding_id"]
        return (
            None if link_id is None else int(link_id),
            None if binding_id is None else int(binding_id),
            row["external_id"],
        )
