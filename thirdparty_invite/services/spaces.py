"""Spaces: a link or binding that names a space covers the rooms the space lists.

`expand` turns the rooms a link or binding names into the rooms it covers: each room,
then, for each room that is a space (`m.room.create` type `m.space`), the rooms it lists
as children (`m.space.child` with a non-empty `via`), in the spec's order, without
repeats. Grants (services/grants.py) invite to all of them, and a loss applies to all of
them.

Only the space's own children are covered, one level: a child that is itself a space is
covered as a room (its members are invited to it), not its children in turn. The rooms an
admin bound are then the rooms they can see in the space they bound, the cost is one
homeserver call per named room, and a cycle of spaces cannot widen a binding. An admin
who wants a sub-space's rooms binds the sub-space too. At most `MAX_CHILDREN` children
per space are covered (the rest are logged): a space listing more than that is a
directory, not a community's rooms.

The answer for each room is kept for a minute, and forgotten when an `m.space.child`
event arrives in it. When the homeserver cannot be reached, an answer up to a day old is
used; without one, `expand` raises `HomeserverUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mautrix.errors import MatrixRequestError

from ..matrix.rooms import HomeserverUnavailable, RoomOps
from ..matrix.spaces import SpaceInfo

MAX_CHILDREN = 200
_TTL = 60.0
_STALE_LIMIT = 24 * 3600.0
# People who are in the space (or invited to it) are owed the rooms added to it later.
PRESENT = ("join", "invite")


class SpaceRooms:
    def __init__(self, rooms: RoomOps, admin_room: str, log: logging.Logger) -> None:
        self.rooms = rooms
        self.admin_room = admin_room
        self.log = log
        self._cache: dict[str, tuple[float, SpaceInfo]] = {}

    def forget(self, room_id: str) -> None:
        """Drop what is known of the room's children (one of them changed)."""
        self._cache.pop(room_id, None)

    async def info(self, room_id: str, *, fresh: bool = False) -> SpaceInfo:
        """The room as a space. A room the bot may not read (not in it) counts as no space:
        the bot cannot invite anyone there either, and `power_gaps` says so. A server error
        or rate limit is no answer: HomeserverUnavailable, unless a recent one is known."""
        cached = self._cache.get(room_id)
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        try:
            try:
                info = await self.rooms.space(room_id)
            except MatrixRequestError as e:
                _raise_if_unavailable(e)
                info = SpaceInfo(room_id, False)
        except HomeserverUnavailable:
            if cached and cached[0] + _STALE_LIMIT > time.monotonic():
                return cached[1]
            raise
        self._cache[room_id] = (time.monotonic() + _TTL, info)
        return info

    async def expand(self, rooms: tuple[str, ...]) -> tuple[str, ...]:
        """The rooms, each followed by its children if it is a space, without repeats.

        Raises HomeserverUnavailable when a named room could not be read now nor lately.
        """
        infos = await asyncio.gather(*(self.info(room_id) for room_id in rooms))
        covered: dict[str, None] = dict.fromkeys(rooms)
        for info in infos:
            children = info.child_ids
            if len(children) > MAX_CHILDREN:
                self.log.warning(
                    "Space %s lists %d rooms; only the first %d are covered",
                    info.room_id,
                    len(children),
                    MAX_CHILDREN,
                )
            covered.update(dict.fromkeys(children[:MAX_CHILDREN]))
        return tuple(covered)

    async def present_in(self, room_id: str) -> frozenset[str]:
        """Who is in the room or invited to it (raises HomeserverUnavailable)."""
        members = await self.rooms.members(room_id)
        return frozenset(user for user, membership in members.items() if membership in PRESENT)

    async def power_gaps(
        self, rooms: tuple[str, ...], needs: tuple[str, ...] = ("invite",)
    ) -> list[str]:
        """Sentences naming each child of the spaces among `rooms` where the bot is not, or
        lacks power for `needs`; empty when there is nothing to say. The named rooms
        themselves are not checked here (the command checks them before it acts)."""
        gaps: list[str] = []
        try:
            for room_id in rooms:
                info = await self.info(room_id, fresh=True)
                if not info.is_space:
                    continue
                space_name = await self._name(room_id)
                for child_id in info.child_ids[:MAX_CHILDREN]:
                    if child_id in rooms:
                        continue
                    gap = await self.child_gap(child_id, space_name, needs)
                    if gap:
                        gaps.append(gap)
        except HomeserverUnavailable:
            gaps.append(
                "My homeserver did not answer, so I could not check the rooms of the space; "
                "`!invitebot status` in each of them says what I may do there."
            )
        return gaps

    async def child_gap(
        self, child_id: str, space_name: str, needs: tuple[str, ...] = ("invite",)
    ) -> str | None:
        """What keeps the bot from acting in a room of a space, in a sentence, or None."""
        try:
            child = await self.rooms.room_info(child_id, fresh=True)
        except MatrixRequestError as e:
            _raise_if_unavailable(e)
            return (
                f"I am not in {child_id}, a room of {space_name}: invite me there, or the "
                "people admitted to the space cannot be invited to it."
            )
        missing = child.power.missing(self.rooms.bot_user_id, needs)
        if not missing:
            return None
        return (
            f"In {child.display_name}, a room of {space_name}, I lack {'; '.join(missing)}: "
            "raise my power level there."
        )

    async def announce_child(self, space_id: str, child_id: str, queued: int) -> None:
        """Tell the space's room and the admin room that a room added to the space is
        covered, how many people were queued for it, and what the bot lacks there."""
        try:
            space_name = await self._name(space_id)
            child_name = await self._name(child_id)
            gap = await self.child_gap(child_id, space_name)
        except HomeserverUnavailable:
            self.log.warning("Could not describe %s, added to space %s", child_id, space_id)
            return
        people = "1 person" if queued == 1 else f"{queued} people"
        text = (
            f"{child_name} was added to {space_name}, which invite links or bindings cover: "
            f"I am inviting {people} holding a grant for the space."
        )
        if gap:
            text += f"\n\n{gap}"
        await self.rooms.send_notice(space_id, text)
        if self.admin_room and self.admin_room != space_id:
            await self.rooms.send_notice(self.admin_room, text)

    async def _name(self, room_id: str) -> str:
        try:
            return (await self.rooms.room_info(room_id)).display_name
        except MatrixRequestError as e:
            _raise_if_unavailable(e)
            return room_id  # a room the bot is not in: its ID opens it just as well


def _raise_if_unavailable(error: MatrixRequestError) -> None:
    """A server error or rate limit is no answer, never "the bot is not in the room"."""
    if error.http_status == 429 or error.http_status >= 500:
        raise HomeserverUnavailable(f"the homeserver answered {error.http_status}") from error
