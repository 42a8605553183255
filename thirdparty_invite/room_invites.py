"""The bot's own room invites: accepted from operators only, after a look at the room."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from maubot.handlers import event
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, Membership, StateEvent

from .durations import now_ms

if TYPE_CHECKING:
    from .services import Services


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
        # maubot may hand the same invite over twice, and stripped invite events carry no
        # event ID: remember rooms whose invite was handled in the last minute instead.
        self._recent_invites: dict[str, float] = {}

    @event.on(EventType.ROOM_MEMBER)
    async def on_member(self, evt: StateEvent) -> None:
        rooms = self.services.rooms
        if evt.state_key != rooms.bot_user_id or evt.content.membership != Membership.INVITE:
            return
        now = time.monotonic()
        self._recent_invites = {r: t for r, t in self._recent_invites.items() if t > now - 60}
        if str(evt.room_id) in self._recent_invites:
            return
        self._recent_invites[str(evt.room_id)] = now
        settings = self.services.settings
        room_id, inviter = str(evt.room_id), str(evt.sender)
        name, join_rule = describe_invite_state(evt)
        described = f"{name or room_id} (join rule: {join_rule or 'unknown'})"
        audit = self.services.storage.audit
        if not settings.accept_invites_from_anyone and inviter not in settings.operators:
            await audit.add(now_ms(), inviter, "bot_invite_declined", room_id, None, described)
            try:
                await rooms.leave(room_id, "Only this bot's operators may invite it.")
            except MatrixRequestError:
                pass
            return
        try:
            await rooms.join(room_id)
        except MatrixRequestError as e:
            await audit.add(now_ms(), inviter, "bot_join_failed", room_id, None, str(e))
            return
        await audit.add(now_ms(), inviter, "bot_joined", room_id, None, described)
        await self._introduce(room_id)

    async def _introduce(self, room_id: str) -> None:
        rooms = self.services.rooms
        try:
            info = await rooms.room_info(room_id, fresh=True)
        except MatrixRequestError:
            return
        missing = info.power.missing(rooms.bot_user_id, ("invite",))
        hint = f" To invite people I need more power: {'; '.join(missing)}." if missing else ""
        await rooms.send_notice(
            room_id,
            "Hello! Room admins can create invite links with `!invitebot link`; "
            f"`!invitebot help` lists everything.{hint}",
        )
