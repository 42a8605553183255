"""Room names for the admin panel's list, kept current from the bot's sync: when a room's
name, topic or canonical alias changes, or the bot joins a room, the room is read once and
its label stored (ManagedRooms.refresh). Page loads then ask the homeserver nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maubot.handlers import event
from mautrix.types import EventType, Membership, StateEvent

from .seen_events import SeenEvents

if TYPE_CHECKING:
    from ..services.container import Services


class RoomLabelHandler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._seen = SeenEvents()

    @event.on(EventType.ROOM_NAME)
    async def on_name(self, evt: StateEvent) -> None:
        await self._refresh(evt)

    @event.on(EventType.ROOM_TOPIC)
    async def on_topic(self, evt: StateEvent) -> None:
        await self._refresh(evt)

    @event.on(EventType.ROOM_CANONICAL_ALIAS)
    async def on_alias(self, evt: StateEvent) -> None:
        await self._refresh(evt)

    @event.on(EventType.ROOM_MEMBER)
    async def on_bot_joined(self, evt: StateEvent) -> None:
        if str(evt.state_key) != self.services.rooms.bot_user_id:
            return
        if getattr(evt.content, "membership", None) != Membership.JOIN:
            return
        if getattr(evt.prev_content, "membership", None) == Membership.JOIN:
            return  # a change of the bot's own name or avatar
        await self._refresh(evt)

    async def _refresh(self, evt: StateEvent) -> None:
        if self._seen.first_sight(str(evt.event_id)):
            await self.services.managed_rooms.refresh(str(evt.room_id))
