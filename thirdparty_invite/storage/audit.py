"""The audit log: everything the bot does to membership, and who asked for it."""

from __future__ import annotations

from mautrix.util.async_db import Database

from .records import AuditEntry


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        at: int,
        actor: str,
        action: str,
        room_id: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> None:
        await self.db.execute(
            "INSERT INTO audit_log (at, actor, action, room_id, target, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            at,
            actor,
            action,
            room_id,
            target,
            detail,
        )

    async def recent(self, room_id: str | None = None, limit: int = 50) -> list[AuditEntry]:
        if room_id is None:
            rows = await self.db.fetch("SELECT * FROM audit_log ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self.db.fetch(
                "SELECT * FROM audit_log WHERE room_id=$1 ORDER BY id DESC LIMIT $2",
                room_id,
                limit,
            )
        return [AuditEntry.from_row(row) for row in rows]
