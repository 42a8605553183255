"""The one place that admits people: a grant, its queue rows, and a wake-up for the queue.

Links and (next) provider bindings both end here. The caller passes what must hold for
the grant inside the same transaction (`spend`: take a link's use, or check an external
account's quota), so a grant, whatever it cost, and its queued invites are written
together or not at all. A person who already holds a grant from the same source gets
their invites queued again and spends nothing.

A named room that is a space covers the rooms it lists (services/spaces.py): they are
read before the transaction, and queued with it. When the homeserver cannot say, the
named rooms alone are queued (logged), so a claim never waits on a slow homeserver.
Children where the bot is not, or may not invite, fail in the queue, which reports them.
A room added to a space later is owed to the people who hold a grant for the space
(`cover_child`), and rooms added while the bot was stopped are caught up at start
(`cover_missed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import logging

import attrs
from mautrix.errors import MatrixRequestError
from mautrix.util.async_db import Connection

from ..durations import now_ms
from ..matrix.rooms import HomeserverUnavailable
from ..storage import Storage
from .spaces import MAX_CHILDREN, SpaceRooms

# Called in the grant's transaction, for a first grant only; raises to refuse it.
Spend = Callable[[Connection, int], Awaitable[None]]


@attrs.frozen
class GrantSource:
    """Where a grant comes from: a link, or a binding with the external account used."""

    link_id: int | None = None
    binding_id: int | None = None
    external_id: str | None = None


@attrs.frozen
class Grant:
    id: int
    first: bool  # False when the person held a grant from this source already
    rooms: tuple[str, ...]


class GrantService:
    def __init__(
        self,
        storage: Storage,
        wake_queue: Callable[[], None],
        spaces: SpaceRooms | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.storage = storage
        # The invite queue's wake(): it delivers the new rows now instead of at its next poll.
        self.wake_queue = wake_queue
        self.spaces = spaces
        self.log = log or logging.getLogger(__name__)
        self._catch_up: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Catch up the rooms of covered spaces in the background (see cover_missed)."""
        self._catch_up = asyncio.create_task(self._catch_up_spaces())

    async def stop(self) -> None:
        if self._catch_up is not None:
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up

    async def _catch_up_spaces(self) -> None:
        try:
            queued = await self.cover_missed()
        except Exception:
            self.log.exception("Catching up the rooms of spaces failed")
            return
        if queued:
            self.log.info("Queued %d invites to rooms added to spaces while stopped", queued)

    async def find(self, user_id: str, source: GrantSource) -> int | None:
        """The id of the person's grant from this link or binding, if they hold one."""
        async with self.storage.db.acquire() as conn:
            grant_id = await self.storage.grants.find(
                conn, user_id, link_id=source.link_id, binding_id=source.binding_id
            )
        return None if grant_id is None else int(grant_id)

    async def grant(
        self,
        user_id: str,
        rooms: tuple[str, ...],
        source: GrantSource,
        spend: Spend | None = None,
    ) -> Grant:
        rooms = await self._covered(rooms)
        now = now_ms()
        grants = self.storage.grants
        async with self.storage.db.acquire() as conn, conn.transaction():
            grant_id = await grants.find(
                conn, user_id, link_id=source.link_id, binding_id=source.binding_id
            )
            first = grant_id is None
            if first:
                if spend is not None:
                    await spend(conn, now)
                grant_id = await grants.add(
                    conn,
                    user_id,
                    now,
                    link_id=source.link_id,
                    binding_id=source.binding_id,
                    external_id=source.external_id,
                )
            for room_id in rooms:
                await self.storage.queue.enqueue(conn, room_id, user_id, grant_id, now)
        self.wake_queue()
        if first:
            what = await self._describe(source)
            for room_id in rooms:
                await self.storage.audit.add(
                    now, user_id, "granted", room_id, what, f"grant {grant_id}"
                )
        return Grant(id=int(grant_id), first=first, rooms=rooms)

    async def _describe(self, source: GrantSource) -> str:
        """ "link 3" or "binding <public id>": a binding's internal id is never shown."""
        if source.link_id is not None:
            return f"link {source.link_id}"
        binding = await self.storage.bindings.get(int(source.binding_id or 0))
        return f"binding {binding.public_id if binding else '?'}"

    async def _covered(self, rooms: tuple[str, ...]) -> tuple[str, ...]:
        """The rooms with the children of those that are spaces (the named rooms alone
        when the homeserver cannot say)."""
        if self.spaces is None:
            return rooms
        try:
            return await self.spaces.expand(rooms)
        except HomeserverUnavailable as e:
            self.log.warning("Granting the named rooms only, without space children: %s", e)
            return rooms

    async def cover_child(self, space_id: str, child_id: str) -> int | None:
        """Queue invites to a room just added to a space for the people owed it; how many.

        None when no unrevoked link and no binding names the space (nothing to cover).
        People are owed it when they hold a grant for the space from such a link, or from
        such a binding without a loss its policy acted on, and are in the space or invited
        to it: someone an admin removed from the space is not invited back through it.
        Raises HomeserverUnavailable when the space's members cannot be read.
        """
        owed = await self._owed(space_id)
        if owed is None:
            return None
        await self._queue_owed(space_id, child_id, owed, "added")
        return len(owed)

    async def bot_joined(self, room_id: str) -> int:
        """The bot joined a room: invites waiting for it are due now, and the spaces that
        list it are caught up there (cover_missed); how many invites were queued."""
        await self.storage.queue.due_now(room_id, now_ms())
        queued = await self.cover_missed(room_id)
        self.wake_queue()
        return queued

    async def cover_missed(self, room_id: str | None = None) -> int:
        """Queue the rooms of covered spaces for the people owed them who were never queued
        there, or whose invite there failed; how many invites were queued.

        Run at start (maubot skips the first sync, so rooms added to a space while the bot
        was stopped arrive as no event) and, with `room_id`, when the bot joins a room (a
        room of a space it was not in could not be invited to). A space or room the
        homeserver cannot tell about now is left for the next time.
        """
        if self.spaces is None:
            return 0
        queued = 0
        for space_id in await self.storage.rooms.managed_rooms():
            try:
                children = (await self.spaces.info(space_id)).child_ids[:MAX_CHILDREN]
                if room_id is not None:
                    children = tuple(c for c in children if c == room_id)
                owed = await self._owed(space_id) if children else None
            except (HomeserverUnavailable, MatrixRequestError) as e:
                self.log.info("Rooms of %s not caught up now: %s", space_id, e)
                continue
            if not owed:
                continue
            for child_id in children:
                done = await self.storage.queue.users_queued_in(child_id)
                missing = {u: g for u, g in owed.items() if u not in done}
                if missing:
                    await self._queue_owed(space_id, child_id, missing, "caught up")
                    queued += len(missing)
        return queued

    async def _owed(self, space_id: str) -> dict[str, int] | None:
        """Person -> grant id for the people owed the space's rooms (see cover_child)."""
        if self.spaces is None:
            return None
        links = await self.storage.links.list_for_room(space_id)
        named = any(link.revoked_at is None for link in links)
        if not named and not await self.storage.bindings.for_room(space_id):
            return None
        grantees = await self.storage.links.grantees_of_room(space_id)
        grantees += await self.storage.bindings.grantees_of_room(space_id)
        if not grantees:
            return {}
        present = await self.spaces.present_in(space_id)
        owed: dict[str, int] = {}
        for user_id, grant_id in grantees:
            if user_id in present:
                owed.setdefault(user_id, grant_id)
        return owed

    async def _queue_owed(
        self, space_id: str, child_id: str, owed: dict[str, int], why: str
    ) -> None:
        now = now_ms()
        async with self.storage.db.acquire() as conn, conn.transaction():
            for user_id, grant_id in owed.items():
                await self.storage.queue.enqueue(conn, child_id, user_id, grant_id, now)
        self.wake_queue()
        bot = self.spaces.rooms.bot_user_id if self.spaces else ""
        await self.storage.audit.add(
            now, bot, "space_room_covered", child_id, space_id, f"{why}: {len(owed)} queued"
        )
