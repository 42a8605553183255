"""Tells the audit log, and the room admins, what the bot did to membership."""

from __future__ import annotations

import time

from ..durations import now_ms
from ..matrix.rooms import RoomOps
from ..storage import QueuedInvite, Storage

# One notice per room and kind of failure in this window: when the bot loses its power,
# every queued invite fails the same way and the admins need to hear it once.
_NOTICE_WINDOW = 600.0


class MembershipReporter:
    def __init__(self, storage: Storage, rooms: RoomOps, admin_room: str) -> None:
        self.storage = storage
        self.rooms = rooms
        self.admin_room = admin_room
        self._last_notice: dict[tuple[str, str], float] = {}

    async def invite_done(self, item: QueuedInvite, outcome: str) -> None:
        await self.storage.audit.add(
            now_ms(),
            self.rooms.bot_user_id,
            outcome,
            item.room_id,
            item.user_id,
            f"grant {item.grant_id}",
        )
        if self.admin_room and outcome == "invited":
            await self.rooms.send_notice(
                self.admin_room, f"Invited {item.user_id} to {item.room_id}."
            )

    async def invite_failed(self, item: QueuedInvite, errcode: str, error: str) -> None:
        await self.storage.audit.add(
            now_ms(),
            self.rooms.bot_user_id,
            "invite_failed",
            item.room_id,
            item.user_id,
            f"{errcode}: {error}",
        )
        key, now = (item.room_id, errcode), time.monotonic()
        if now - self._last_notice.get(key, -_NOTICE_WINDOW) < _NOTICE_WINDOW:
            return
        self._last_notice[key] = now
        # Without an admin room, the room itself is where its admins will see it.
        await self.rooms.send_notice(
            self.admin_room or item.room_id,
            f"Could not invite {item.user_id} to {item.room_id}: {error}",
        )
