"""The bot's direct chats: which rooms it joined as a DM, and who it shares them with.

They are kept where every Matrix client keeps them, in the bot's `m.direct` account data,
so they survive restarts without a table of their own. A room the bot joined as a DM was
not vetted by an operator: room admin commands are refused there (anyone can mark an
invite as direct), and the bot leaves when the person does.
"""

from __future__ import annotations

import asyncio

from ..matrix.rooms import RoomOps


def is_private_chat(joined: frozenset[str], bot_user_id: str, user_id: str) -> bool:
    """True when the bot and the person are the room's only joined members."""
    return joined == frozenset({bot_user_id, user_id}) and bot_user_id != user_id


class DirectChats:
    def __init__(self, rooms: RoomOps) -> None:
        self.rooms = rooms
        self._person_by_room: dict[str, str] | None = None
        # m.direct is read, changed and written whole: one change at a time.
        self._lock = asyncio.Lock()

    async def is_direct_chat(self, room_id: str) -> bool:
        if self._person_by_room is None:
            async with self._lock:
                if self._person_by_room is None:
                    self._person_by_room = _by_room(await self.rooms.direct_chats())
        return room_id in self._person_by_room

    async def remember(self, room_id: str, user_id: str) -> None:
        async with self._lock:
            chats = await self.rooms.direct_chats()
            rooms = chats.setdefault(user_id, [])
            if room_id not in rooms:
                rooms.append(room_id)
                await self.rooms.set_direct_chats(chats)
            self._person_by_room = _by_room(chats)

    async def forget(self, room_id: str) -> None:
        async with self._lock:
            chats = await self.rooms.direct_chats()
            kept = {user: [r for r in rooms if r != room_id] for user, rooms in chats.items()}
            kept = {user: rooms for user, rooms in kept.items() if rooms}
            if kept != chats:
                await self.rooms.set_direct_chats(kept)
            self._person_by_room = _by_room(kept)


def _by_room(chats: dict[str, list[str]]) -> dict[str, str]:
    return {room: user for user, rooms in chats.items() for room in rooms}
