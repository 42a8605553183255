"""A room's m.room.tombstone, as the bot reads it from the room's state or timeline."""

from __future__ import annotations

from typing import Any

import attrs

from .addresses import server_of
from .ids import is_room_id


@attrs.frozen
class Tombstone:
    """A room's m.room.tombstone: the room was upgraded and `replacement` continues it."""

    room_id: str
    replacement: str
    sender: str
    at: int  # origin_server_ts, ms

    @classmethod
    def from_event(cls, room_id: str, event: Any) -> Tombstone | None:
        content = event.get("content") if isinstance(event, dict) else None
        replacement = content.get("replacement_room") if isinstance(content, dict) else None
        if not is_room_id(replacement):
            return None  # no tombstone, or one emptied again
        sender, at = event.get("sender"), event.get("origin_server_ts")
        return cls(
            room_id=room_id,
            replacement=replacement,
            sender=sender if isinstance(sender, str) else "",
            at=at if isinstance(at, int) else 0,
        )

    @property
    def via(self) -> list[str]:
        """Servers to join the replacement through: the upgrader's, then the old room's."""
        servers = [server_of(self.sender), server_of(self.room_id)]
        return [s for i, s in enumerate(servers) if s and s not in servers[:i]]
