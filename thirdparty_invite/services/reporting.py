"""Tells the audit log, and the room admins, what the bot did to membership."""

from __future__ import annotations

import time

from ..durations import now_ms
from ..matrix.rooms import RoomOps
from ..storage import AuditEntry, QueuedInvite, Storage

# One notice per room and kind of failure in this window: when the bot loses its power,
# every queued invite fails the same way and the admins need to hear it once.
_NOTICE_WINDOW = 600.0
DONE_NOTICES = {
    "invited": "Invited {user} to {room}.",
    "kicked": "Removed {user} from {room}: they no longer qualify.",
}
FAILED_NOTICES = {
    "invite": "Could not invite {user} to {room}: {error}",
    "kick": "Could not remove {user} from {room}: {error}",
}


class MembershipReporter:
    def __init__(self, storage: Storage, rooms: RoomOps, admin_room: str) -> None:
        self.storage = storage
        self.rooms = rooms
        self.admin_room = admin_room
        self._last_notice: dict[tuple[str, str], float] = {}

    async def recent(self, room_id: str, limit: int) -> list[AuditEntry]:
        """The room's last `limit` audit entries, newest first (`!invitebot audit`)."""
        return await self.storage.audit.recent(room_id, limit)

    async def invite_done(self, item: QueuedInvite, outcome: str) -> None:
        detail = item.reason or "" if item.action == "kick" else f"grant {item.grant_id}"
        await self.storage.audit.add(
            now_ms(), self.rooms.bot_user_id, outcome, item.room_id, item.user_id, detail
        )
        if self.admin_room and outcome in DONE_NOTICES:
            await self.rooms.send_notice(
                self.admin_room, DONE_NOTICES[outcome].format(user=item.user_id, room=item.room_id)
            )

    async def invite_failed(self, item: QueuedInvite, errcode: str, error: str) -> None:
        await self.storage.audit.add(
            now_ms(),
            self.rooms.bot_user_id,
            "kick_failed" if item.action == "kick" else "invite_failed",
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
            FAILED_NOTICES[item.action].format(user=item.user_id, room=item.room_id, error=error),
        )
