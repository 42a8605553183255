"""Names and topics of the rooms the bot is in, as last read from the homeserver.

maubot's state store keeps power levels and members but no names; the panel's room list
reads the names from here in one query instead of asking the homeserver once per room.
"""

from __future__ import annotations

import attrs
from mautrix.util.async_db import Database


@attrs.frozen
class RoomLabel:
    room_id: str
    name: str | None
    topic: str | None
    updated_at: int


class RoomLabelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> dict[str, RoomLabel]:
        rows = await self.db.fetch("SELECT room_id, name, topic, updated_at FROM room_labels")
        return {
            row["room_id"]: RoomLabel(
                row["room_id"], row["name"], row["topic"], int(row["updated_at"])
            )
            for row in rows
        }

    async def put(self, room_id: str, name: str | None, topic: str | None, now: int) -> None:
        await self.db.execute(
            "INSERT INTO room_labels (room_id, name, topic, updated_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (room_id) DO UPDATE SET name=excluded.name, topic=excluded.topic,"
            " updated_at=excluded.updated_at",
            room_id,
            name,
            topic,
            now,
        )
