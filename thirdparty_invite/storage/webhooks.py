"""Webhook deliveries already applied, by source and delivery id, for a while.

A delivery is taken once by one statement, `INSERT ... ON CONFLICT DO NOTHING`: of any
number of copies arriving together (a sender retrying while the first is still being
handled, or two maubot instances on one database), exactly one inserts its row, on SQLite
and on PostgreSQL alike.
"""

from __future__ import annotations

from mautrix.util.async_db import Database


class WebhookDeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_once(self, source: str, delivery_id: str, now: int) -> bool:
        """True if this delivery was not seen before (it is now); False for a repeat."""
        taken = await self.db.fetchval(
            "INSERT INTO webhook_deliveries (source, delivery_id, received_at)"
            " VALUES ($1, $2, $3) ON CONFLICT (source, delivery_id) DO NOTHING"
            " RETURNING delivery_id",
            source,
            delivery_id,
            now,
        )
        return taken is not None

    async def forget(self, source: str, delivery_id: str) -> None:
        """Drop a delivery that could not be applied, so the sender's retry is applied."""
        await self.db.execute(
            "DELETE FROM webhook_deliveries WHERE source=$1 AND delivery_id=$2",
            source,
            delivery_id,
        )

    async def purge(self, source: str, received_before: int) -> None:
        """Forget the deliveries of `source` received before then."""
        await self.db.execute(
            "DELETE FROM webhook_deliveries WHERE source=$1 AND received_at < $2",
            source,
            received_before,
        )
