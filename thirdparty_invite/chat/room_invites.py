"""The bot's own membership events, handed to the BotMemberships service: invites of the
bot (with what their stripped state says about the room) and departures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maubot.handlers import event
from mautrix.types import EventType, Membership, StateEvent

from ..services.bot_memberships import BotInvite
from .room_upgrades import predecessor_in_invite

if TYPE_CHECKING:
    from ..services.container import Services


def describe_invite_state(evt: StateEvent) -> tuple[str | None, str | None]:
    """(room name, join rule) from the stripped state an invite carries, if any."""
    name = join_rule = None
    for stripped in (evt.unsigned.invite_room_state if evt.unsigned else None) or []:
        if stripped.type == EventType.ROOM_NAME:
            name = getattr(stripped.content, "name", None)
        elif stripped.type == EventType.ROOM_JOIN_RULES:
            rule = getattr(stripped.content, "join_rule", None)
            join_rule = str(rule.value if hasattr(rule, "value") else rule)
    return name, join_rule


class BotInviteHandler:
    def __init__(self, services: Services) -> None:
        self.services = services

    @event.on(EventType.ROOM_MEMBER)
    async def on_member(self, evt: StateEvent) -> None:
        memberships = self.services.bot_memberships
        membership = evt.content.membership
        is_bot = evt.state_key == self.services.rooms.bot_user_id
        if is_bot and membership == Membership.INVITE:
            # Into the replacement of an upgraded room the bot is in: vetted by that room.
            upgrades = self.services.room_upgrades
            room_id, inviter = str(evt.room_id), str(evt.sender)
            if await upgrades.follow_on_invite(room_id, inviter, predecessor_in_invite(evt)):
                return
            name, join_rule = describe_invite_state(evt)
            await memberships.on_invite(
                BotInvite(
                    room_id=str(evt.room_id),
                    inviter=str(evt.sender),
                    room_name=name,
                    join_rule=join_rule,
                    is_direct=bool(getattr(evt.content, "is_direct", False)),
                )
            )
        elif membership in (Membership.LEAVE, Membership.BAN):
            await memberships.on_departure(str(evt.room_id), is_bot)
