"""Room upgrades as the bot sees them in its sync: m.room.tombstone in a room it is in.

Invites into a replacement room arrive through room_invites.py, which asks
`RoomUpgrades.follow_on_invite` (with `predecessor_in_invite`) before vetting the inviter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maubot.handlers import event
from mautrix.types import EventType, StateEvent

from ..matrix.tombstones import Tombstone

if TYPE_CHECKING:
    from ..services.container import Services


def predecessor_in_invite(evt: StateEvent) -> str | None:
    """The room an invited-to room replaces, from the m.room.create in the invite's
    stripped state (a hint only: the caller verifies it against the old room's state)."""
    for stripped in (evt.unsigned.invite_room_state if evt.unsigned else None) or []:
        if stripped.type != EventType.ROOM_CREATE:
            continue
        predecessor: Any = getattr(stripped.content, "predecessor", None)
        if isinstance(predecessor, dict):
            room_id = predecessor.get("room_id")
        else:
            room_id = getattr(predecessor, "room_id", None)
        return str(room_id) if room_id else None
    return None


class RoomUpgradeHandler:
    def __init__(self, services: Services) -> None:
        self.services = services

    @event.on(EventType.ROOM_TOMBSTONE)
    async def on_tombstone(self, evt: StateEvent) -> None:
        if evt.state_key != "":
            return
        tomb = Tombstone.from_event(
            str(evt.room_id),
            {
                "content": {"replacement_room": getattr(evt.content, "replacement_room", None)},
                "sender": str(evt.sender),
                "origin_server_ts": int(evt.timestamp or 0),
            },
        )
        if tomb is not None:
            await self.services.room_upgrades.on_tombstone(tomb)
