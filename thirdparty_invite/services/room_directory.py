"""How rooms are shown to a person: name, topic, and the links that open them.

Answers come within the RoomOps bound even when the bot's homeserver hangs: a room the
bot cannot describe right now (or has left) is shown by its ID, which still works in
every link. All rooms of a link are described at once, not one timeout after another.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import attrs
from mautrix.errors import MatrixRequestError

from ..config import WebSettings
from ..matrix.addresses import matrix_to, matrix_uri, server_of
from ..matrix.rooms import HomeserverUnavailable, RoomOps


@attrs.frozen
class WebClientLink:
    name: str
    url: str


@attrs.frozen
class RoomSummary:
    room_id: str
    name: str
    topic: str | None
    matrix_to: str
    matrix_uri: str
    client: WebClientLink | None = None


@attrs.frozen
class BotContact:
    """How a person reaches the bot for "message the bot instead"."""

    user_id: str
    matrix_to: str
    # Without it, a DM with encryption on (many clients' default) goes unread.
    reads_encrypted_chats: bool


class RoomDirectory:
    def __init__(self, rooms: RoomOps, web: WebSettings) -> None:
        self.rooms = rooms
        self.web = web

    async def describe(self, room_ids: tuple[str, ...] | list[str]) -> list[RoomSummary]:
        return list(await asyncio.gather(*(self._describe(room_id) for room_id in room_ids)))

    def bot_contact(self) -> BotContact:
        bot = self.rooms.bot_user_id
        return BotContact(bot, matrix_to(bot), self.rooms.can_decrypt)

    async def _describe(self, room_id: str) -> RoomSummary:
        name, topic = room_id, None
        try:
            info = await self.rooms.room_info(room_id)
            name, topic = info.display_name, info.topic
        except (MatrixRequestError, HomeserverUnavailable):
            pass  # The bot left the room, cannot see it, or its homeserver is down.
        # A server in the room, so clients can join rooms whose ID names none (v12).
        via = server_of(self.rooms.bot_user_id)
        client = None
        if self.web.client_room_url:
            client = WebClientLink(
                name=self.web.client_name or "your web client",
                url=self.web.client_room_url.replace("{room_id}", quote(room_id, safe="")),
            )
        return RoomSummary(
            room_id=room_id,
            name=name,
            topic=topic,
            matrix_to=matrix_to(room_id, via),
            matrix_uri=matrix_uri(room_id, via),
            client=client,
        )
