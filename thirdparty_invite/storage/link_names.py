"""The panel's names for invite links (people following a link never see them)."""

from __future__ import annotations

from collections.abc import Collection

from mautrix.util.async_db import Database


class LinkNameStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, link_id: int, name: str) -> None:
        await self.db.execute(
            "INSERT INTO link_names (link_id, name) VALUES ($1, $2)"
            " ON CONFLICT (link_id) DO UPDATE SET name=excluded.name",
            link_id,
            name,
        )

    async def of(self, link_ids: Collection[int]) -> dict[int, str]:
        if not link_ids:
            return {}
        # Ids are integers from our own rows: inlined, as both engines take the same text.
        ids = ", ".join(str(int(i)) for i in link_ids)
        rows = await self.db.fetch(
            f"SELECT link_id, name FROM link_names WHERE link_id IN ({ids})"
        )
        return {int(row["link_id"]): row["name"] for row in rows}
