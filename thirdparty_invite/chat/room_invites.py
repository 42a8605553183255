"""The bot's own memberships: room invites from operators (after a look at the room), and
direct chats from anyone, which it leaves when the person does."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from maubot.handlers import event
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, Membership, StateEvent

from ..durations import now_ms

if TYPE_CHECKING:
    from ..services.container import Services

DIRECT_CHAT_GREETING = (
    "Hello! Send me `!invitebot claim <link>` with the invite link you were given, "
    "and I will invite you to its rooms."
)
ENCRYPTED_CHAT_GREETING = (
    "Hello! This chat is encrypted and I cannot read encrypted messages: start a direct "
    "chat with me with encryption turned off, and send `!invitebot claim <link>` there."
)


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
        bot = self.services.rooms.bot_user_id
        membership = evt.content.membership
        if evt.state_key == bot and membership == Membership.INVITE:
            await self._on_invite(evt)
        elif membership in (Membership.LEAVE, Membership.BAN):
            await self._on_departure(str(evt.room_id), evt.state_key == bot)

    async def _on_invite(self, evt: StateEvent) -> None:
        now = time.monotonic()
        self._recent_invites = {r: t for r, t in self._recent_invites.items() if t > now - 60}
        if str(evt.room_id) in self._recent_invites:
            return
        self._recent_invites[str(evt.room_id)] = now
        settings = self.services.settings
        rooms = self.services.rooms
        room_id, inviter = str(evt.room_id), str(evt.sender)
        name, join_rule = describe_invite_state(evt)
        described = f"{name or room_id} (join rule: {join_rule or 'unknown'})"
        audit = self.services.storage.audit
        if settings.accept_direct_messages and getattr(evt.content, "is_direct", False):
            await self._join_direct_chat(room_id, inviter, described)
            return
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

    async def _join_direct_chat(self, room_id: str, inviter: str, described: str) -> None:
        rooms = self.services.rooms
        audit = self.services.storage.audit
        try:
            await rooms.join(room_id)
            members = await rooms.members(room_id)
        except MatrixRequestError as e:
            await audit.add(now_ms(), inviter, "bot_join_failed", room_id, None, str(e))
            return
        others = [
            user
            for user, membership in members.items()
            if membership in ("join", "invite") and user not in (inviter, rooms.bot_user_id)
        ]
        if others:
            # Anyone can mark an invite as direct: a room with more people is not a DM.
            await audit.add(now_ms(), inviter, "bot_left_direct", room_id, None, "not a DM")
            await self._leave(room_id, "I join direct chats only; this room has other members.")
            return
        try:
            await self.services.direct_chats.remember(room_id, inviter)
        except MatrixRequestError as e:
            # Unrecorded, the room would pass for one an operator vetted: do not stay.
            await audit.add(now_ms(), inviter, "bot_join_failed", room_id, None, str(e))
            await self._leave(room_id, "I could not set this direct chat up; try again later.")
            return
        await audit.add(now_ms(), inviter, "bot_joined_direct", room_id, None, described)
        encrypted = await rooms.is_encrypted(room_id) and not rooms.can_decrypt
        await rooms.send_notice(
            room_id, ENCRYPTED_CHAT_GREETING if encrypted else DIRECT_CHAT_GREETING
        )

    async def _on_departure(self, room_id: str, bot_left: bool) -> None:
        direct_chats = self.services.direct_chats
        if not await direct_chats.is_direct_chat(room_id):
            return
        rooms = self.services.rooms
        if not bot_left:
            try:
                if await rooms.joined_members(room_id) - {rooms.bot_user_id}:
                    return  # the person is still here
            except MatrixRequestError:
                pass  # the bot cannot read the room any more: nothing to stay for
            await self._leave(room_id, "The direct chat is over.")
            await self.services.storage.audit.add(
                now_ms(), rooms.bot_user_id, "bot_left_direct", room_id, None, "person left"
            )
        await direct_chats.forget(room_id)

    async def _leave(self, room_id: str, reason: str) -> None:
        try:
            await self.services.rooms.leave(room_id, reason)
        except MatrixRequestError:
            pass

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
