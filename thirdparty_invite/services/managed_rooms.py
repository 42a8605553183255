"""The rooms a person may manage, for the admin panel: listed from the state the bot
already keeps, and checked fresh before anything is done to one.

The list reads the bot's joined rooms, their power levels and create events from the
client's state store (`matrix/state_cache.py`, fed by sync) and their names from
`room_labels`: no homeserver request per room. A room the store knows nothing of yet (the
bot joined it before the store existed) is read once, which fills the store for good.
Every action goes through `require`: `RoomAdmin.require_manager` reads the room fresh,
exactly as the chat commands do, and every refusal that could tell whether the room
exists is answered the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import logging

import attrs
from mautrix.errors import MatrixRequestError

from ..durations import now_ms
from ..errors import UserFacingError
from ..matrix.ids import is_room_id
from ..matrix.power import RoomPower
from ..matrix.rooms import HomeserverUnavailable, RoomInfo, RoomOps
from ..matrix.state_cache import KnownRoom
from ..storage import Storage
from .direct_chats import DirectChats
from .manage_texts import not_room_admin
from .room_admin import SLOW_HOMESERVER, RoomAdmin

# Refusals of RoomAdmin that would tell a room that exists from one that does not.
_INDISTINCT = frozenset({"M_FORBIDDEN", "TPI_BOT_NOT_IN_ROOM", "TPI_DIRECT_CHAT"})
# Rooms read at once when the store lacks them (once per room, ever).
_FILL_CONCURRENCY = 8
_FILL_BUDGET = 3.0


@attrs.frozen
class ManagedRoom:
    room_id: str
    name: str
    topic: str | None
    is_space: bool
    may_kick: bool


@attrs.frozen
class _Judged:
    room_id: str
    power: RoomPower
    is_space: bool


class ManagedRooms:
    def __init__(
        self,
        storage: Storage,
        rooms: RoomOps,
        room_admin: RoomAdmin,
        direct_chats: DirectChats,
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self.rooms = rooms
        self.room_admin = room_admin
        self.direct_chats = direct_chats
        self.log = log

    async def list_for(self, user_id: str) -> list[ManagedRoom]:
        """Rooms and spaces where the bot is joined and `user_id` may invite, by name."""
        mine = [j for j in await self._judged() if j.power.can(user_id, "invite")]
        mine = [j for j in mine if not await self.direct_chats.is_direct_chat(j.room_id)]
        labels = await self.storage.room_labels.all()
        unnamed = [j.room_id for j in mine if j.room_id not in labels]
        if unnamed:  # read once; from then on the label is kept
            await self._read_all(unnamed)
            labels = await self.storage.room_labels.all()
        result = []
        for judged in mine:
            label = labels.get(judged.room_id)
            result.append(
                ManagedRoom(
                    room_id=judged.room_id,
                    name=(label.name if label else None) or judged.room_id,
                    topic=label.topic if label else None,
                    is_space=judged.is_space,
                    may_kick=judged.power.can(user_id, "kick"),
                )
            )
        result.sort(key=lambda room: (room.name.casefold(), room.room_id))
        return result

    async def visible_to(self, user_id: str, room_ids: Iterable[str]) -> set[str]:
        """Which of `room_ids` the person may manage, as the state store has it: only those
        are shown among a link's or binding's rooms."""
        wanted = set(room_ids)
        if not wanted:
            return set()
        try:
            judged = await self._judged()
        except UserFacingError:  # the homeserver cannot say: show none of them
            return set()
        mine = {j.room_id for j in judged if j.power.can(user_id, "invite")}
        return mine & wanted

    async def require(
        self, user_id: str, room_id: str, bot_needs: tuple[str, ...] = ()
    ) -> RoomInfo:
        """The room read fresh, if `user_id` may manage it now and the bot can do what is
        asked; else the one refusal that names no room (the bot's missing power is said,
        to people who may manage the room)."""
        if not is_room_id(room_id):
            raise not_room_admin()
        try:
            info = await self.room_admin.require_manager(user_id, room_id, bot_needs=bot_needs)
        except UserFacingError as e:
            if e.errcode in _INDISTINCT:
                raise not_room_admin() from None
            raise
        await self._label(info)
        return info

    async def require_all(
        self, user_id: str, room_ids: Iterable[str], bot_needs: tuple[str, ...] = ()
    ) -> list[RoomInfo]:
        return [await self.require(user_id, room_id, bot_needs) for room_id in room_ids]

    async def refresh(self, room_id: str) -> None:
        """Read the room again and keep its name (its name, topic or alias changed, or the
        bot joined it); a room that cannot be read now keeps what it had."""
        await self._read_all([room_id])

    async def _judged(self) -> list[_Judged]:
        known = await self.rooms.state_cache.joined_rooms()
        if known is None:  # no SQL state store (not under maubot): the homeserver's list
            try:
                joined = await self.rooms.joined_rooms()
            except (HomeserverUnavailable, MatrixRequestError):
                raise UserFacingError("TPI_HOMESERVER_SLOW", SLOW_HOMESERVER, 504) from None
            known = [KnownRoom(room_id, None, None) for room_id in joined]
        complete = [_Judged(k.room_id, k.power, k.is_space) for k in known if k.complete]
        missing = [k.room_id for k in known if not k.complete]
        if missing:
            infos = await self._read_all(missing)
            complete += [_Judged(i.room_id, i.power, i.is_space) for i in infos]
        return complete

    async def _read_all(self, room_ids: list[str]) -> list[RoomInfo]:
        """Read rooms the store or the labels lack, a few at a time, for at most
        `_FILL_BUDGET` seconds (what is not read by then is read on a later load); a room
        that cannot be read now is left out this time, and one the bot is not in any more
        is marked so in the state store."""
        gate = asyncio.Semaphore(_FILL_CONCURRENCY)

        async def read(room_id: str) -> RoomInfo | None:
            async with gate:
                try:
                    info = await self.rooms.room_info(room_id, fresh=True)
                except MatrixRequestError as e:  # the bot is not in it (any more)
                    self.log.debug("Not in %s any more (%s)", room_id, e)
                    await self.rooms.state_cache.left(room_id)
                    return None
                except HomeserverUnavailable as e:
                    self.log.debug("Could not read %s for the room list: %s", room_id, e)
                    return None
                await self._label(info)
                return info

        tasks = [asyncio.ensure_future(read(room_id)) for room_id in room_ids]
        done, pending = await asyncio.wait(tasks, timeout=_FILL_BUDGET)
        for task in pending:
            task.cancel()
        return [info for task in done if (info := task.result()) is not None]

    async def _label(self, info: RoomInfo) -> None:
        name = info.name or info.canonical_alias
        await self.storage.room_labels.put(info.room_id, name, info.topic, now_ms())
