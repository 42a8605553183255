"""The bot's own memberships: which room invites it accepts (operators', after a look at
the room), direct chats from anyone (left when the person leaves), and the audit trail of
all of it. The chat front hands it parsed events; it knows nothing of maubot's handlers."""

from __future__ import annotations

import time

import attrs
from mautrix.errors import MatrixRequestError

from ..config import Settings
from ..durations import now_ms
from ..matrix.rooms import HomeserverUnavailable, RoomOps
from ..storage import Storage
from .direct_chats import DirectChats

DIRECT_CHAT_GREETING = (
    "Hello! Send me `!invitebot claim <link>` with the invite link you were given, "
    "and I will invite you to its rooms."
)
ENCRYPTED_CHAT_GREETING = (
    "Hello! This chat is encrypted and I cannot read encrypted messages: start a direct "
    "chat with me with encryption turned off, and send `!invitebot claim <link>` there."
)


@attrs.frozen
class BotInvite:
    """An invite of the bot, as the chat front read it from the event."""

    room_id: str
    inviter: str
    room_name: str | None
    join_rule: str | None
    is_direct: bool

    def describe(self) -> str:
        return f"{self.room_name or self.room_id} (join rule: {self.join_rule or 'unknown'})"


class BotMemberships:
    def __init__(
        self, settings: Settings, storage: Storage, rooms: RoomOps, direct_chats: DirectChats
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.rooms = rooms
        self.direct_chats = direct_chats
        # maubot may hand the same invite over twice, and stripped invite events carry no
        # event ID: remember rooms whose invite was handled in the last minute instead.
        self._recent_invites: dict[str, float] = {}

    async def _audit(self, actor: str, action: str, room_id: str, detail: str) -> None:
        await self.storage.audit.add(now_ms(), actor, action, room_id, None, detail)

    async def on_invite(self, invite: BotInvite) -> None:
        now = time.monotonic()
        self._recent_invites = {r: t for r, t in self._recent_invites.items() if t > now - 60}
        if invite.room_id in self._recent_invites:
            return
        self._recent_invites[invite.room_id] = now
        room_id, inviter, described = invite.room_id, invite.inviter, invite.describe()
        if self.settings.accept_direct_messages and invite.is_direct:
            await self._join_direct_chat(room_id, inviter, described)
            return
        if not self.settings.accept_invites_from_anyone and inviter not in self.settings.operators:
            await self._audit(inviter, "bot_invite_declined", room_id, described)
            await self._leave(room_id, "Only this bot's operators may invite it.")
            return
        try:
            await self.rooms.join(room_id)
        except (MatrixRequestError, HomeserverUnavailable) as e:
            await self._audit(inviter, "bot_join_failed", room_id, str(e))
            return
        await self._audit(inviter, "bot_joined", room_id, described)
        await self._introduce(room_id)

    async def _join_direct_chat(self, room_id: str, inviter: str, described: str) -> None:
        rooms = self.rooms
        try:
            await rooms.join(room_id)
            members = await rooms.members(room_id)
        except (MatrixRequestError, HomeserverUnavailable) as e:
            await self._audit(inviter, "bot_join_failed", room_id, str(e))
            return
        others = [
            user
            for user, membership in members.items()
            if membership in ("join", "invite") and user not in (inviter, rooms.bot_user_id)
        ]
        if others:
            # Anyone can mark an invite as direct: a room with more people is not a DM.
            await self._audit(inviter, "bot_left_direct", room_id, "not a DM")
            await self._leave(room_id, "I join direct chats only; this room has other members.")
            return
        try:
            await self.direct_chats.remember(room_id, inviter)
        except (MatrixRequestError, HomeserverUnavailable) as e:
            # Unrecorded, the room would pass for one an operator vetted: do not stay.
            await self._audit(inviter, "bot_join_failed", room_id, str(e))
            await self._leave(room_id, "I could not set this direct chat up; try again later.")
            return
        await self._audit(inviter, "bot_joined_direct", room_id, described)
        encrypted = await rooms.is_encrypted(room_id) and not rooms.can_decrypt
        await rooms.send_notice(
            room_id, ENCRYPTED_CHAT_GREETING if encrypted else DIRECT_CHAT_GREETING
        )

    async def on_departure(self, room_id: str, bot_left: bool) -> None:
        """Someone left or was banned: leave a direct chat the person left."""
        direct_chats = self.direct_chats
        if not await direct_chats.is_direct_chat(room_id):
            return
        rooms = self.rooms
        if not bot_left:
            try:
                if await rooms.joined_members(room_id) - {rooms.bot_user_id}:
                    return  # the person is still here
            except (MatrixRequestError, HomeserverUnavailable):
                pass  # the bot cannot read the room any more: nothing to stay for
            await self._leave(room_id, "The direct chat is over.")
            await self._audit(rooms.bot_user_id, "bot_left_direct", room_id, "person left")
        await direct_chats.forget(room_id)

    async def _leave(self, room_id: str, reason: str) -> None:
        try:
            await self.rooms.leave(room_id, reason)
        except (MatrixRequestError, HomeserverUnavailable):
            pass

    async def _introduce(self, room_id: str) -> None:
        rooms = self.rooms
        try:
            info = await rooms.room_info(room_id, fresh=True)
        except (MatrixRequestError, HomeserverUnavailable):
            return
        missing = info.power.missing(rooms.bot_user_id, ("invite",))
        hint = f" To invite people I need more power: {'; '.join(missing)}." if missing else ""
        await rooms.send_notice(
            room_id,
            "Hello! Room admins can create invite links with `!invitebot link`; "
            f"`!invitebot help` lists everything.{hint}",
        )
