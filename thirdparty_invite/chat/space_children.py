"""Rooms added to a space, as the bot sees them in its sync: m.space.child in a space it is in.

A child event with a non-empty `via` that was not listed before is a room added to the
space: when an invite link or binding names the space, the people who hold a grant for it
are invited there too (GrantService.cover_child) and the admins are told, with what the
bot lacks in that room (SpaceRooms.announce_child). An edit of a listed child (its
`order` or `suggested`) adds nothing. A removed child (empty content) covers nothing new
and removes nobody: people stay in rooms they were admitted to, as when a binding is
removed; re-checks apply a loss to the children the space lists at that time.

When the bot joins a room (as the notice about a room it was not in asks), invites
waiting for it are due at once, and the spaces covering it are caught up: the people owed
that room who were never queued there, or whose invite failed, are queued
(GrantService.bot_joined).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maubot.handlers import event
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, Membership, StateEvent

from ..matrix.ids import is_room_id
from ..matrix.rooms import HomeserverUnavailable
from ..matrix.spaces import child_via
from .seen_events import SeenEvents

if TYPE_CHECKING:
    from ..services.container import Services


def _content(value: Any) -> Any:
    return value.serialize() if hasattr(value, "serialize") else value


class SpaceChildHandler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._seen = SeenEvents()

    @event.on(EventType.SPACE_CHILD)
    async def on_space_child(self, evt: StateEvent) -> None:
        space_id, child_id = str(evt.room_id), str(evt.state_key)
        spaces = self.services.spaces
        spaces.forget(space_id)
        if not is_room_id(child_id) or child_id == space_id:
            return
        if not child_via(_content(evt.content)):
            return  # removed: see the module's docstring
        if child_via(_content(evt.prev_content)):
            return  # listed already: an edit of its order or suggestion
        if not self._seen.first_sight(str(evt.event_id)):
            return
        try:
            queued = await self.services.grants.cover_child(space_id, child_id)
        except (HomeserverUnavailable, MatrixRequestError) as e:
            spaces.log.warning("Room %s added to space %s not covered: %s", child_id, space_id, e)
            return
        if queued is not None:
            await spaces.announce_child(space_id, child_id, queued)

    @event.on(EventType.ROOM_MEMBER)
    async def on_bot_joined(self, evt: StateEvent) -> None:
        if str(evt.state_key) != self.services.rooms.bot_user_id:
            return
        if getattr(evt.content, "membership", None) != Membership.JOIN:
            return
        if getattr(evt.prev_content, "membership", None) == Membership.JOIN:
            return  # a change of name or avatar, not a join
        if not self._seen.first_sight(str(evt.event_id)):
            return
        queued = await self.services.grants.bot_joined(str(evt.room_id))
        if queued:
            self.services.spaces.log.info("Queued %d invites to %s", queued, evt.room_id)
