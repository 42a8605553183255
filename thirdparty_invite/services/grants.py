"""The one place that admits people: a grant, its queue rows, and a wake-up for the queue.

Links and (next) provider bindings both end here. The caller passes what must hold for
the grant inside the same transaction (`spend`: take a link's use, or check an external
account's quota), so a grant, whatever it cost, and its queued invites are written
together or not at all. A person who already holds a grant from the same source gets
their invites queued again and spends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from mautrix.util.async_db import Connection

from ..durations import now_ms
from ..storage import Storage

# Called in the grant's transaction, for a first grant only; raises to refuse it.
Spend = Callable[[Connection, int], Awaitable[None]]


@attrs.frozen
class GrantSource:
    """Where a grant comes from: a link, or a binding with the external account used."""

    link_id: int | None = None
    binding_id: int | None = None
    external_id: str | None = None

    def describe(self) -> str:
        return f"link {self.link_id}" if self.link_id is not None else f"binding {self.binding_id}"


@attrs.frozen
class Grant:
    id: int
    first: bool  # False when the person held a grant from this source already
    rooms: tuple[str, ...]


class GrantService:
    def __init__(self, storage: Storage, wake_queue: Callable[[], None]) -> None:
        self.storage = storage
        # The invite queue's wake(): it delivers the new rows now instead of at its next poll.
        self.wake_queue = wake_queue

    async def find(self, user_id: str, source: GrantSource) -> int | None:
        """The id of the person's grant from this link or binding, if they hold one."""
        async with self.storage.db.acquire() as conn:
            grant_id = await self.storage.grants.find(
                conn, user_id, link_id=source.link_id, binding_id=source.binding_id
            )
        return None if grant_id is None else int(grant_id)

    async def grant(
        self,
        user_id: str,
        rooms: tuple[str, ...],
        source: GrantSource,
        spend: Spend | None = None,
    ) -> Grant:
        now = now_ms()
        grants = self.storage.grants
        async with self.storage.db.acquire() as conn, conn.transaction():
            grant_id = await grants.find(
                conn, user_id, link_id=source.link_id, binding_id=source.binding_id
            )
            first = grant_id is None
            if first:
                if spend is not None:
                    await spend(conn, now)
                grant_id = await grants.add(
                    conn,
                    user_id,
                    now,
                    link_id=source.link_id,
                    binding_id=source.binding_id,
                    external_id=source.external_id,
                )
            for room_id in rooms:
                await self.storage.queue.enqueue(conn, room_id, user_id, grant_id, now)
        self.wake_queue()
        if first:
            await self.storage.audit.add(
                now, user_id, "granted", None, source.describe(), f"grant {grant_id}"
            )
        return Grant(id=int(grant_id), first=first, rooms=rooms)
